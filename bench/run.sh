#!/usr/bin/env bash
# Compares sio's bench-server with Node socket.io and socketioxide on the bench-server contract
# (shared/protocol/bench-server.md), interleaved in one run:
#   bench/run.sh [--quick] [--servers "sio node socketioxide"]
# Each measurement gets a fresh server process pinned to core 0 (`taskset -c 0`); the load
# generator runs on core 1. Prints a markdown report (also left in bench/target/last-run.md) with
# the medians over the rounds and the ratios sio / Node and sio / socketioxide.
# --quick: 1,000 clients, short durations, one round (under 3 minutes once built).
# Environment overrides: CLIENTS, ECHO_CLIENTS, FAN_CLIENTS, FAN_RATE, FAN_MAX_RATE,
# FAN_MAX_DURATION, DURATION, WARMUP, ROUNDS.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
quick=0
servers="sio node socketioxide"
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) quick=1 ;;
    --servers) servers=$2; shift ;;
    *) echo "usage: $0 [--quick] [--servers \"sio node socketioxide\"]" >&2; exit 2 ;;
  esac
  shift
done

if [[ $quick == 1 ]]; then
  : "${CLIENTS:=1000}" "${ECHO_CLIENTS:=100}" "${FAN_CLIENTS:=1000}" "${FAN_RATE:=20}"
  : "${DURATION:=3}" "${WARMUP:=1}" "${ROUNDS:=1}" "${FAN_MAX_RATE:=1000}" "${FAN_MAX_DURATION:=2}"
else
  : "${CLIENTS:=10000}" "${ECHO_CLIENTS:=100}" "${FAN_CLIENTS:=1000}" "${FAN_RATE:=50}"
  : "${DURATION:=10}" "${WARMUP:=2}" "${ROUNDS:=3}" "${FAN_MAX_RATE:=1000}" "${FAN_MAX_DURATION:=5}"
fi

# --- build (release, only what runs) -------------------------------------------------------
export CARGO_TARGET_DIR="$here/target"
echo "building (release): sio bench-server, loadgen, bench-socketioxide" >&2
(cd "$root" && CARGO_TARGET_DIR="$root/target" cargo build --quiet --release -p sio-example-bench --bin bench-server)
cargo build --quiet --release --manifest-path "$here/loadgen/Cargo.toml"
cargo build --quiet --release --manifest-path "$here/socketioxide/Cargo.toml"
if [[ ! -d "$here/node/node_modules/socket.io" ]]; then
  (cd "$here/node" && npm ci --no-audit --no-fund --silent)
fi
loadgen="$here/target/release/loadgen"

server_cmd() {
  case $1 in
    sio) echo "$root/target/release/bench-server" ;;
    node) echo "node $here/node/server.mjs" ;;
    socketioxide) echo "$here/target/release/bench-socketioxide" ;;
    *) echo "unknown server $1" >&2; return 1 ;;
  esac
}

# --- server lifecycle ----------------------------------------------------------------------
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
server_pid=""
loadgen_pid=""
port=3100
stop_server() {
  [[ -n $server_pid ]] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
# The load generator runs in the background and is waited for, so that a signal to this script is
# handled at once rather than after the current measurement.
stop_all() {
  [[ -z $loadgen_pid ]] || kill -TERM "$loadgen_pid" 2>/dev/null || true
  stop_server
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

start_server() {
  local cmd
  cmd=$(server_cmd "$1")
  port=$((port + 1))
  # taskset execs the server: $! is the server's own PID.
  # shellcheck disable=SC2086
  PORT=$port WS_NO_BUFFER_UTIL=1 taskset -c 0 $cmd >"$here/target/$1.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$1 did not start listening on port $port (see bench/target/$1.log)" >&2
  return 1
}

results="$here/target/results.jsonl"
: >"$results"
# measure SERVER LABEL LOADGEN-ARGS...: one fresh server, one loadgen run, one result line.
measure() {
  local server=$1 label=$2 out
  shift 2
  start_server "$server"
  timeout 120 taskset -c 1 "$loadgen" "$@" --addr "127.0.0.1:$port" --pid "$server_pid" \
    >"$here/target/loadgen.out" &
  loadgen_pid=$!
  if wait "$loadgen_pid"; then
    loadgen_pid=""
    out=$(cat "$here/target/loadgen.out")
    echo "{\"server\":\"$server\",\"label\":\"$label\",\"round\":$round,${out#\{}" >>"$results"
    echo "  $server $label: $out" >&2
  else
    loadgen_pid=""
    echo "  $server $label: loadgen failed" >&2
  fi
  stop_server
}

# Every server answers the contract before anything is measured.
round=0
for server in $servers; do
  start_server "$server"
  node "$here/node/smoke.cjs" "$port" >&2
  stop_server
done

started=$(date +%s)
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  for server in $servers; do
    measure "$server" connect connect --clients "$CLIENTS"
  done
  for inflight in 1 8; do
    for server in $servers; do
      measure "$server" "echo$inflight" echo --clients "$ECHO_CLIENTS" --inflight "$inflight" \
        --duration-s "$DURATION" --warmup-s "$WARMUP"
    done
  done
  for server in $servers; do
    measure "$server" fanout fanout --clients "$FAN_CLIENTS" --rate "$FAN_RATE" \
      --duration-s "$DURATION" --warmup-s "$WARMUP"
  done
  # The same far above what one core can deliver (1M deliveries/s offered): deliveries/s is then
  # the server's capacity (the backlog is drained for at most 10 s after the last send; the
  # latencies only measure that queue).
  for server in $servers; do
    measure "$server" fanout-max fanout --clients "$FAN_CLIENTS" --rate "$FAN_MAX_RATE" \
      --duration-s "$FAN_MAX_DURATION" --warmup-s 0
  done
done
elapsed=$(($(date +%s) - started))

# --- report ----------------------------------------------------------------------------------
socketio_version=$(node -p "require('$here/node/node_modules/socket.io/package.json').version")
socketioxide_version=$(awk '/^name = "socketioxide"$/ {getline; gsub(/[^0-9.]/, ""); print}' "$here/socketioxide/Cargo.lock")
{
  echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC'), $elapsed s of measurements: \`bench/run.sh$([[ $quick == 1 ]] && echo ' --quick')\`"
  echo
  echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), server on core 0, loadgen on core 1"
  echo "- sio $(git -C "$root" rev-parse --short HEAD) (examples/bench \`bench-server\`, actix-web), $(rustc -V | cut -d' ' -f1-2)"
  echo "- Node $(node -v), socket.io $socketio_version (pure-JS ws, WS_NO_BUFFER_UTIL=1)"
  echo "- socketioxide $socketioxide_version on axum 0.8 / tokio"
  echo "- clients: connect $CLIENTS, echo $ECHO_CLIENTS, fan-out $FAN_CLIENTS receivers at $FAN_RATE broadcasts/s (saturated: $FAN_MAX_RATE/s for $FAN_MAX_DURATION s); ${DURATION} s measured after ${WARMUP} s warm-up; $ROUNDS round(s), medians"
  echo
  python3 "$here/report.py" "$results"
} | tee "$here/target/last-run.md"
