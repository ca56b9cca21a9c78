#!/usr/bin/env bash
# Where the heap of idle connections goes, under `valgrind --tool=massif`:
#   bench/profile/memory.sh [CLIENTS]     (default 1000)
# Connects CLIENTS websocket clients to sio's bench-server (CONNECT, then idle), and prints, for
# the heap's peak, the bytes per connection by allocation site: which part of the stack (actix-http,
# actix-ws, tokio, sio) holds what. RSS per connection is measured by bench/run.sh; the heap is
# allocated bytes, of which the untouched pages of large buffers are not resident.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bench=$(dirname "$here")
root=$(dirname "$bench")
out="$bench/target/profile"
mkdir -p "$out"
clients=${1:-1000}
(cd "$root" && cargo build --quiet --release -p sio-example-bench --bin bench-server)
[[ -d $bench/node/node_modules/ws ]] || (cd "$bench/node" && npm ci --no-audit --no-fund --silent)
port=3399
rm -f "$out"/massif.out.*
PORT=$port valgrind --tool=massif --depth=40 --threshold=0.2 --max-snapshots=100 \
  --massif-out-file="$out/massif.out.%p" "$root/target/release/bench-server" 2>"$out/massif.log" &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
node "$here/load.cjs" "$port" connect "$clients" >/dev/null
sleep 1
kill -TERM $pid
wait $pid 2>/dev/null || true
python3 "$here/massif.py" "$out/massif.out.$pid" "$clients"
