"""Reads a callgrind dump (bench/profile/run.sh leaves them in bench/target/profile/):
    python3 callgrind.py top FILE [N]            self instructions per function, most first
    python3 callgrind.py callers FILE NAME       who calls functions named like NAME, at what cost
    python3 callgrind.py allocs FILE OPS [N]     allocations per operation, by caller
callgrind_annotate folds inlined code into the file it came from, which hides the functions of
an optimized Rust binary; this sums each `fn=` block's own cost lines instead."""
import collections
import re
import sys

ALLOC = ("__rustc::__rust_alloc", "__rustc::__rust_realloc", "__rustc::__rust_alloc_zeroed")


def read(path):
    names, self_cost = {}, collections.Counter()
    calls, inclusive = collections.Counter(), collections.Counter()
    fn = callee = None
    edge = None  # (caller, callee) whose inclusive cost is on the next cost line
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
        if m:
            if m.group(3):
                names[m.group(2)] = m.group(3)
            if m.group(1) == "fn":
                fn = m.group(2)
            else:
                callee = m.group(2)
            continue
        if line.startswith("calls="):
            edge = (fn, callee)
            calls[edge] += int(line.split("=")[1].split()[0])
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            cost = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
            if edge is not None:
                inclusive[edge] += cost
                edge = None
            elif fn is not None:
                self_cost[fn] += cost
    name = lambda fid: names.get(fid, fid)
    return name, self_cost, calls, inclusive


def main():
    what, path = sys.argv[1], sys.argv[2]
    name, self_cost, calls, inclusive = read(path)
    if what == "top":
        total = sum(self_cost.values())
        print(f"{total:>14,}  total")
        for fid, cost in self_cost.most_common(int(sys.argv[3]) if len(sys.argv) > 3 else 30):
            print(f"{cost:>14,}  {100 * cost / total:5.1f}%  {name(fid)[:150]}")
    elif what == "callers":
        wanted = [(e, c) for e, c in inclusive.items() if sys.argv[3] in name(e[1])]
        for (caller, callee), cost in sorted(wanted, key=lambda x: -x[1])[:15]:
            print(f"{cost:>12,}  {name(caller)[:110]}  ->  {name(callee)[:60]}")
    elif what == "allocs":
        ops = int(sys.argv[3])
        by_caller = collections.Counter()
        for (caller, callee), n in calls.items():
            if name(callee) in ALLOC:
                by_caller[name(caller)] += n
        print(f"{sum(by_caller.values()) / ops:8.2f}  allocations per operation")
        for caller, n in by_caller.most_common(int(sys.argv[4]) if len(sys.argv) > 4 else 25):
            print(f"{n / ops:8.2f}  {caller[:160]}")
    else:
        sys.exit(__doc__)


main()
