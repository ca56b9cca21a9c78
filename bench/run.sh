#!/usr/bin/env bash
# Compares sio's bench-server with Node socket.io, socketioxide and a bare tokio-tungstenite
# server (the contract's raw mode: the physical limit) on the bench-server contract
# (shared/protocol/bench-server.md), interleaved in one run:
#   bench/run.sh [--quick] [--servers "sio node socketioxide bare"] [--only "fanout10k cluster"]
# Each measurement gets fresh server processes pinned to core 0 (`taskset -c 0`); the load
# generator (and, for the two-node rows, a private redis-server) runs on core 1. Prints a markdown
# report (also left in bench/target/last-run.md) with the medians over the rounds and the ratios
# sio / Node, sio / socketioxide and sio / bare.
# --quick: 1,000 clients, short durations, one round (under 3 minutes once built).
# --only: the rows to measure, by label (connect echo1 echo8 echo-polling fanout fanout-max
# fanout10k cluster); all by default.
# Environment overrides: CLIENTS, ECHO_CLIENTS, POLL_CLIENTS, FAN_CLIENTS, FAN_RATE,
# FAN_MAX_RATE, FAN_MAX_DURATION, FAN10K_CLIENTS, FAN10K_RATE, CLUSTER_CLIENTS, CLUSTER_RATE,
# DURATION, WARMUP, ROUNDS; SIO_BIN runs another build of bench-server as sio (before/after).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
quick=0
servers="sio node socketioxide bare"
only=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) quick=1 ;;
    --servers) servers=$2; shift ;;
    --only) only=$2; shift ;;
    *) echo "usage: $0 [--quick] [--servers \"sio node socketioxide bare\"] [--only \"LABEL ...\"]" >&2; exit 2 ;;
  esac
  shift
done

if [[ $quick == 1 ]]; then
  : "${CLIENTS:=1000}" "${ECHO_CLIENTS:=100}" "${FAN_CLIENTS:=1000}" "${FAN_RATE:=20}"
  : "${DURATION:=2}" "${WARMUP:=1}" "${ROUNDS:=1}" "${FAN_MAX_RATE:=1000}" "${FAN_MAX_DURATION:=1}"
else
  : "${CLIENTS:=10000}" "${ECHO_CLIENTS:=100}" "${FAN_CLIENTS:=1000}" "${FAN_RATE:=50}"
  # 30 measurements a round: 5 s windows keep three rounds near 10 minutes.
  : "${DURATION:=5}" "${WARMUP:=1}" "${ROUNDS:=3}" "${FAN_MAX_RATE:=1000}" "${FAN_MAX_DURATION:=2}"
fi
# Long-polling echo (one echo in flight per client); fan-out to 10k receivers at 100k deliveries/s;
# two nodes on one Redis, receivers split across them, 20k deliveries/s offered.
: "${POLL_CLIENTS:=100}" "${FAN10K_CLIENTS:=10000}" "${FAN10K_RATE:=10}"
: "${CLUSTER_CLIENTS:=1000}" "${CLUSTER_RATE:=20}"

# --- build (release, only what runs) -------------------------------------------------------
export CARGO_TARGET_DIR="$here/target"
echo "building (release): sio bench-server, loadgen, bench-socketioxide, bench-raw" >&2
(cd "$root" && CARGO_TARGET_DIR="$root/target" cargo build --quiet --release -p sio-example-bench --bin bench-server)
for crate in loadgen socketioxide raw; do
  cargo build --quiet --release --manifest-path "$here/$crate/Cargo.toml"
done
if [[ ! -d "$here/node/node_modules/@socket.io/redis-adapter" ]]; then
  (cd "$here/node" && npm ci --no-audit --no-fund --silent)
fi
loadgen="$here/target/release/loadgen"

server_cmd() {
  case $1 in
    sio) echo "${SIO_BIN:-$root/target/release/bench-server}" ;;
    node) echo "node $here/node/server.mjs" ;;
    socketioxide) echo "$here/target/release/bench-socketioxide" ;;
    bare) echo "$here/target/release/bench-raw" ;;
    *) echo "unknown server $1" >&2; return 1 ;;
  esac
}

# --- process lifecycle ---------------------------------------------------------------------
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
server_pids=()
ports=()
loadgen_pid=""
redis_pid=""
redis_url=""
port=3100
# stop PID...: SIGTERM, then SIGKILL for whatever still runs 5 s later.
stop() {
  [[ $# -gt 0 ]] || return 0
  local pid alive
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 50); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 1 ]] || break
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null || true
  wait "$@" 2>/dev/null || true
}
stop_servers() {
  stop "${server_pids[@]}"
  server_pids=()
  ports=()
}
# The load generator runs in the background and is waited for, so that a signal to this script is
# handled at once rather than after the current measurement.
stop_all() {
  [[ -z $loadgen_pid ]] || kill -TERM "$loadgen_pid" 2>/dev/null || true
  stop_servers
  [[ -z $redis_pid ]] || stop "$redis_pid"
  redis_pid=""
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The next port after $port that nothing listens on (other services share this machine).
next_port() {
  port=$((port + 1))
  while listening "$port"; do port=$((port + 1)); done
}
# wait_listening PORT PID NAME: until PORT answers (10 s at most, or PID exits).
wait_listening() {
  for _ in $(seq 100); do
    listening "$1" && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "$3 did not start listening on port $1" >&2
  return 1
}

# start_server NAME: one more server (with REDIS_URL=$redis_url, empty for none) on a new port.
start_server() {
  local cmd
  cmd=$(server_cmd "$1")
  next_port
  # taskset execs the server: $! is the server's own PID.
  # shellcheck disable=SC2086
  REDIS_URL=$redis_url PORT=$port WS_NO_BUFFER_UTIL=1 taskset -c 0 $cmd \
    >"$here/target/$1-${#ports[@]}.log" 2>&1 &
  server_pids+=("$!")
  ports+=("$port")
  wait_listening "$port" "$!" "$1 (see bench/target/$1-$((${#ports[@]} - 1)).log)"
}

# A private redis-server for the two-node rows, on the load generator's core.
start_redis() {
  next_port
  taskset -c 1 redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    >"$here/target/redis.log" 2>&1 &
  redis_pid=$!
  wait_listening "$port" "$redis_pid" "redis-server (see bench/target/redis.log)"
  redis_url="redis://127.0.0.1:$port"
}

# The raw-mode server answers echoes and broadcasts (smoke.cjs speaks Socket.IO only).
smoke_bare() {
  "$loadgen" fanout --raw 1 --clients 2 --rate 20 --duration-s 0.3 --warmup-s 0 --timeout-s 3 \
    --addr "127.0.0.1:${ports[0]}" | python3 -c '
import json, sys
r = json.load(sys.stdin)
sys.exit(0 if r["expected"] > 0 and r["delivered"] == r["expected"] else "bare: broadcasts lost")' &&
  "$loadgen" echo --raw 1 --clients 2 --duration-s 0.3 --warmup-s 0 --timeout-s 3 \
    --addr "127.0.0.1:${ports[0]}" | python3 -c '
import json, sys
r = json.load(sys.stdin)
sys.exit(0 if r["acks"] > 0 and r["errors"] == 0 else "bare: echo failed")' &&
  echo "port ${ports[0]}: raw mode ok" >&2
}

results="$here/target/results.jsonl"
: >"$results"
# measure SERVER LABEL NODES LOADGEN-ARGS...: NODES fresh servers (2: on $redis_url, checked to
# reach each other), one loadgen run against all of them, one result line.
measure() {
  local server=$1 label=$2 nodes=$3 out addrs pids raw=()
  shift 3
  [[ -z $only || " $only " == *" $label "* ]] || return 0
  for _ in $(seq "$nodes"); do start_server "$server"; done
  if [[ $nodes -gt 1 ]]; then node "$here/node/smoke.cjs" "${ports[0]}" "${ports[1]}" >&2; fi
  [[ $server != bare ]] || raw=(--raw 1)
  addrs=$(printf '127.0.0.1:%s,' "${ports[@]}")
  pids=$(printf '%s,' "${server_pids[@]}")
  timeout 120 taskset -c 1 "$loadgen" "$@" "${raw[@]}" --addr "${addrs%,}" --pid "${pids%,}" \
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
  stop_servers
}

# Every server answers the contract before anything is measured.
round=0
for server in $servers; do
  start_server "$server"
  if [[ $server == bare ]]; then smoke_bare; else node "$here/node/smoke.cjs" "${ports[0]}" >&2; fi
  stop_servers
done
# The servers that speak Socket.IO (long-polling and Redis rows).
sio_servers=$(tr ' ' '\n' <<<"$servers" | grep -vx bare | xargs || true)

started=$(date +%s)
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  for server in $servers; do
    measure "$server" connect 1 connect --clients "$CLIENTS"
  done
  for inflight in 1 8; do
    for server in $servers; do
      measure "$server" "echo$inflight" 1 echo --clients "$ECHO_CLIENTS" --inflight "$inflight" \
        --duration-s "$DURATION" --warmup-s "$WARMUP"
    done
  done
  for server in $sio_servers; do
    measure "$server" echo-polling 1 echo --transport polling --clients "$POLL_CLIENTS" \
      --inflight 1 --duration-s "$DURATION" --warmup-s "$WARMUP"
  done
  for server in $servers; do
    measure "$server" fanout 1 fanout --clients "$FAN_CLIENTS" --rate "$FAN_RATE" \
      --duration-s "$DURATION" --warmup-s "$WARMUP"
  done
  # The same far above what one core can deliver (1M deliveries/s offered): deliveries/s is then
  # the server's capacity (the backlog is drained for at most 10 s after the last send; the
  # latencies only measure that queue).
  for server in $servers; do
    measure "$server" fanout-max 1 fanout --clients "$FAN_CLIENTS" --rate "$FAN_MAX_RATE" \
      --duration-s "$FAN_MAX_DURATION" --warmup-s 0
  done
  for server in $servers; do
    measure "$server" fanout10k 1 fanout --clients "$FAN10K_CLIENTS" --rate "$FAN10K_RATE" \
      --duration-s "$DURATION" --warmup-s "$WARMUP" --concurrency 256
  done
  # Two nodes of the same server on one Redis, both on core 0; receivers alternate between them,
  # the emitter is on the first.
  if [[ -n $sio_servers && ( -z $only || " $only " == *" cluster "* ) ]]; then
    [[ -n $redis_pid ]] || start_redis
    for server in $sio_servers; do
      measure "$server" cluster 2 fanout --clients "$CLUSTER_CLIENTS" --rate "$CLUSTER_RATE" \
        --duration-s "$DURATION" --warmup-s "$WARMUP"
    done
  fi
done
elapsed=$(($(date +%s) - started))

# --- report ----------------------------------------------------------------------------------
socketio_version=$(node -p "require('$here/node/node_modules/socket.io/package.json').version")
lock_version() { awk "/^name = \"$1\"\$/ {getline; gsub(/[^0-9.]/, \"\"); print}" "$2"; }
socketioxide_version=$(lock_version socketioxide "$here/socketioxide/Cargo.lock")
tungstenite_version=$(lock_version tokio-tungstenite "$here/raw/Cargo.lock")
{
  echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC'), $elapsed s of measurements: \`bench/run.sh$([[ $quick == 1 ]] && echo ' --quick')\`"
  echo
  echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), server on core 0, loadgen on core 1"
  echo "- sio $(git -C "$root" rev-parse --short HEAD) (examples/bench \`bench-server\`, actix-web on \`sio_core::server::Server\`), $(rustc -V | cut -d' ' -f1-2)"
  echo "- Node $(node -v), socket.io $socketio_version (pure-JS ws, WS_NO_BUFFER_UTIL=1)"
  echo "- socketioxide $socketioxide_version on axum 0.8 / tokio; bare: tokio-tungstenite $tungstenite_version (raw mode)"
  echo "- Redis rows: $(redis-server --version | cut -d' ' -f1-3), private, on core 1 with the load generator"
  echo "- clients: connect $CLIENTS, echo $ECHO_CLIENTS (long-polling: $POLL_CLIENTS, 1 in flight), fan-out $FAN_CLIENTS receivers at $FAN_RATE broadcasts/s (saturated: $FAN_MAX_RATE/s for $FAN_MAX_DURATION s), $FAN10K_CLIENTS receivers at $FAN10K_RATE/s, 2 nodes + Redis: $CLUSTER_CLIENTS receivers at $CLUSTER_RATE/s; ${DURATION} s measured after ${WARMUP} s warm-up; $ROUNDS round(s), medians"
  echo
  python3 "$here/report.py" "$results"
} | tee "$here/target/last-run.md"
