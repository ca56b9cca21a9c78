"""Smoke test with the Python `python-socketio` client: connect with auth over each transport,
an ack with several arguments, a room broadcast, and disconnect. Usage: smoke.py URL"""
import sys
import threading

import socketio

url = sys.argv[1]
failures = 0


def check(name, ok):
    global failures
    print(("ok   " if ok else "FAIL ") + name)
    if not ok:
        failures += 1


for transports in (["polling"], ["websocket"], ["polling", "websocket"]):
    label = "+".join(transports)
    client = socketio.Client(reconnection=False)
    welcome = threading.Event()
    seen = {}

    @client.on("welcome")
    def on_welcome(data):
        seen["welcome"] = data
        welcome.set()

    client.connect(url, auth={"name": "py"}, transports=transports, wait_timeout=5)
    check(f"{label}: welcome with auth", welcome.wait(5) and seen["welcome"]["auth"] == {"name": "py"})
    check(f"{label}: ack with several arguments", list(client.call("echo", (1, "2", {"3": [True]}), timeout=5)) == [1, "2", {"3": [True]}])
    check(f"{label}: typed tuple data", client.call("add", (2, 3), timeout=5) == 5)
    client.call("join", "py-room", timeout=5)
    check(f"{label}: rooms", sorted(client.call("my-rooms", timeout=5)) == sorted([client.get_sid(), "py-room"]))
    client.disconnect()

print(f"{3 * 4 - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
