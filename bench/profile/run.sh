#!/usr/bin/env bash
# Instruction counts of sio's bench-server on its hot paths, under `valgrind --tool=callgrind`:
#   bench/profile/run.sh [BINARY]        (default: the workspace's release bench-server, built here)
# Instructions, unlike seconds, repeat from run to run on a shared, noisy machine, so a change to a
# hot path shows as a before/after count. For each scenario of load.cjs (a fixed sequence of
# frames) the server's counters are zeroed once it has warmed up, the load runs, and the counters
# are dumped: instructions per connect (connect + close), per echo ack and per broadcast delivery
# (the connects and closes of those runs subtracted), and per long-polling echo. The dumps stay in bench/target/profile/;
# bench/profile/callgrind.py lists their costliest functions, callers and allocations.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bench=$(dirname "$here")
root=$(dirname "$bench")
out="$bench/target/profile"
mkdir -p "$out"
rm -f "$out"/*.callgrind.*
server=${1:-}
if [[ -z $server ]]; then
  (cd "$root" && cargo build --quiet --release -p sio-example-bench --bin bench-server)
  server="$root/target/release/bench-server"
fi
[[ -d $bench/node/node_modules/ws ]] || (cd "$bench/node" && npm ci --no-audit --no-fund --silent)
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }

CLIENTS=${CLIENTS:-100}
ECHOES=${ECHOES:-100}
BROADCASTS=${BROADCASTS:-50}
POLLING_CLIENTS=${POLLING_CLIENTS:-20}
port=3300
pid=""
stop() { [[ -z $pid ]] || { kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; }; }
trap stop EXIT

# count SCENARIO ARGS...: instructions the server ran for one load.cjs run.
count() {
  local scenario=$1 file
  shift
  port=$((port + 1))
  file="$out/$scenario.callgrind"
  PORT=$port valgrind --tool=callgrind --callgrind-out-file="$file.%p" "$server" 2>"$out/$scenario.valgrind.log" &
  pid=$!
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  # First connections initialise lazily (thread locals, tables); keep them out of the count.
  node "$here/load.cjs" "$port" connect 16 >/dev/null
  sleep 1
  callgrind_control -z "$pid" >/dev/null 2>&1
  node "$here/load.cjs" "$port" "$@" >/dev/null
  sleep 2
  callgrind_control -d "$scenario" "$pid" >/dev/null 2>&1
  sleep 1
  local dump
  dump=$(ls -t "$file.$pid".* 2>/dev/null | head -1)
  stop
  grep -m1 '^summary:\|^totals:' "$dump" | awk '{print $2}'
}

connect=$(count connect connect "$CLIENTS")
echo=$(count echo echo "$CLIENTS" "$ECHOES")
fanout=$(count fanout fanout "$CLIENTS" "$BROADCASTS")
# Long-polling: the same clients' handshakes without echoes are the baseline.
polling_open=$(count polling-open polling "$POLLING_CLIENTS" 0)
polling=$(count polling polling "$POLLING_CLIENTS" "$ECHOES")
python3 - "$CLIENTS" "$ECHOES" "$BROADCASTS" "$POLLING_CLIENTS" "$connect" "$echo" "$fanout" \
  "$polling_open" "$polling" <<'PY'
import sys
c, e, b, pc, connect, echo, fanout, polling_open, polling = map(int, sys.argv[1:])
print(f"| Path | instructions per operation | operations |")
print(f"|---|---:|---:|")
print(f"| connect + close (websocket, CONNECT, close) | {connect / c:,.0f} | {c} |")
print(f"| echo ack (8 in flight) | {(echo - connect) / (c * e):,.0f} | {c * e} |")
print(f"| broadcast delivery ({c} receivers) | {(fanout - connect) / (c * b):,.0f} | {c * b} |")
print(f"| long-polling session (handshake, CONNECT, close) | {polling_open / pc:,.0f} | {pc} |")
print(f"| long-polling echo ack (POST + the GET that answers it) | {(polling - polling_open) / (pc * e):,.0f} | {pc * e} |")
PY
echo "dumps: $out/{connect,echo,fanout,polling-open,polling}.callgrind.*; read them with bench/profile/callgrind.py (top, callers, allocs)"
