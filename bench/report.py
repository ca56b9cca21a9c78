"""Turns run.sh's results (one JSON object per line) into the markdown ratio table.

Each cell is the median over the rounds; a ratio is sio's value divided by the other server's.
For rates higher is better, for memory and latency lower is better (the Better column says).
"""

import json
import statistics
import sys

# (row title, label of the measurement, field, which way is better)
ROWS = [
    ("connects/s", "connect", "connects_per_s", "higher"),
    ("RSS per idle connection (KB)", "connect", "rss_per_conn_kb", "lower"),
    ("echo, 1 in flight: acks/s", "echo1", "acks_per_s", "higher"),
    ("echo, 1 in flight: p50 (ms)", "echo1", "p50_ms", "lower"),
    ("echo, 1 in flight: p99 (ms)", "echo1", "p99_ms", "lower"),
    ("echo, 8 in flight: acks/s", "echo8", "acks_per_s", "higher"),
    ("echo, 8 in flight: p50 (ms)", "echo8", "p50_ms", "lower"),
    ("echo, 8 in flight: p99 (ms)", "echo8", "p99_ms", "lower"),
    ("echo over long-polling, 1 in flight: acks/s", "echo-polling", "acks_per_s", "higher"),
    ("echo over long-polling, 1 in flight: p50 (ms)", "echo-polling", "p50_ms", "lower"),
    ("echo over long-polling, 1 in flight: p99 (ms)", "echo-polling", "p99_ms", "lower"),
    ("fan-out to 1k: delivered/s", "fanout", "delivered_per_s", "higher"),
    ("fan-out to 1k: p50 (ms)", "fanout", "p50_ms", "lower"),
    ("fan-out to 1k: p99 (ms)", "fanout", "p99_ms", "lower"),
    ("fan-out to 1k: delivered / expected", "fanout", "delivered_ratio", "higher"),
    ("fan-out to 1k: messages per server CPU-second", "fanout", "per_cpu_s", "higher"),
    ("fan-out to 1k saturated: delivered/s", "fanout-max", "delivered_per_s", "higher"),
    ("fan-out to 1k saturated: p99 (ms)", "fanout-max", "p99_ms", "lower"),
    ("fan-out to 1k saturated: delivered / expected", "fanout-max", "delivered_ratio", "higher"),
    ("fan-out to 10k: delivered/s", "fanout10k", "delivered_per_s", "higher"),
    ("fan-out to 10k: p50 (ms)", "fanout10k", "p50_ms", "lower"),
    ("fan-out to 10k: p99 (ms)", "fanout10k", "p99_ms", "lower"),
    ("fan-out to 10k: delivered / expected", "fanout10k", "delivered_ratio", "higher"),
    ("fan-out to 10k: messages per server CPU-second", "fanout10k", "per_cpu_s", "higher"),
    ("2 nodes + Redis fan-out: delivered/s", "cluster", "delivered_per_s", "higher"),
    ("2 nodes + Redis fan-out: p50 (ms)", "cluster", "p50_ms", "lower"),
    ("2 nodes + Redis fan-out: p99 (ms)", "cluster", "p99_ms", "lower"),
    ("2 nodes + Redis fan-out: delivered / expected", "cluster", "delivered_ratio", "higher"),
    ("connect: server CPU (ms) for all the connects", "connect", "server_cpu_ms", "lower"),
    ("echo, 1 in flight: server CPU µs / ack", "echo1", "cpu_us_per_op", "lower"),
    ("echo, 8 in flight: server CPU µs / ack", "echo8", "cpu_us_per_op", "lower"),
    ("echo over long-polling: server CPU µs / ack", "echo-polling", "cpu_us_per_op", "lower"),
    ("fan-out to 1k: server CPU µs / delivery", "fanout", "cpu_us_per_op", "lower"),
    ("fan-out to 1k saturated: server CPU µs / delivery", "fanout-max", "cpu_us_per_op", "lower"),
    ("fan-out to 10k: server CPU µs / delivery", "fanout10k", "cpu_us_per_op", "lower"),
    ("2 nodes + Redis: both servers' CPU µs / delivery", "cluster", "cpu_us_per_op", "lower"),
]

# Columns in this order, whichever of them ran; the ratios are sio's value over each other's.
SERVERS = ["sio", "node", "socketioxide", "bare"]


def fmt(value):
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def main(path):
    cells = {}
    servers = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["server"] not in servers:
                servers.append(r["server"])
            # Near 1, the load generator's core, not the server, may have set the pace.
            if r.get("loadgen_seconds"):
                r["loadgen_busy"] = r["loadgen_cpu_ms"] / 1000 / r["loadgen_seconds"]
            if r.get("expected"):
                r["delivered_ratio"] = r["delivered"] / r["expected"]
            if r.get("cpu_us_per_op"):
                r["per_cpu_s"] = 1e6 / r["cpu_us_per_op"]
            for key, value in r.items():
                if isinstance(value, (int, float)):
                    cells.setdefault((r["server"], r["label"], key), []).append(value)

    def median(server, label, field):
        values = cells.get((server, label, field))
        return statistics.median(values) if values else None

    servers = [s for s in SERVERS if s in servers]
    others = [s for s in servers if s != "sio"] if "sio" in servers else []
    head = ["Metric", "Better"] + servers + [f"sio / {o}" for o in others]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
    for title, label, field, better in ROWS:
        values = {s: median(s, label, field) for s in servers}
        if all(v is None for v in values.values()):
            continue  # a scenario this run left out
        row = [title, better] + [fmt(values[s]) for s in servers]
        for o in others:
            a, b = values["sio"], values[o]
            # Blank where a server has no such row (bare: no long-polling, no Redis).
            row.append(f"{a / b:.2f}" if a is not None and b else "")
        print("| " + " | ".join(row) + " |")
    busy = sorted(
        {(s, l) for (s, l, k), v in cells.items() if k == "loadgen_busy" and max(v) > 0.9}
    )
    if busy:
        print()
        print(
            "Load generator over 90% of its core (a lower bound for the server): "
            + ", ".join(f"{s} {l}" for s, l in busy)
        )
    cut = sorted({(s, l) for (s, l, k), v in cells.items() if k == "cut_off" and max(v) > 0})
    if cut:
        print()
        print(
            "Still delivering when the drain limit ended the run (delivered / expected is then a"
            " backlog, not a loss): " + ", ".join(f"{s} {l}" for s, l in cut)
        )
    failed = sorted(
        {(s, l) for (s, l, k), v in cells.items() if k == "failed" and max(v) > 0}
        | {(s, l) for (s, l, k), v in cells.items() if k == "errors" and max(v) > 0}
    )
    if failed:
        print()
        print("Failed connects or errored clients in: " + ", ".join(f"{s} {l}" for s, l in failed))


if __name__ == "__main__":
    main(sys.argv[1])
