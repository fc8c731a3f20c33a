#!/usr/bin/env bash
# `keel --workers N` under benches/loadgen.rs: req/s and server CPU µs per
# request (summed over the worker processes) for a plain keel and for 1 and
# 2 workers, on four workloads, plus how the requests were shared between
# the workers (each worker's own `requests` counter from /status).
#
#   small  64 keep-alive connections, a 6-byte file
#   churn  16 clients, `Connection: close`, a new connection per request
#   churn1 1 client, a new connection per request (the hardest to balance)
#   large  2 keep-alive connections downloading a 256 MiB file: GB/s
#   list   8 keep-alive connections asking for a listing of 2,000 files
#          (--list, 216 KB), read 1 MiB at a time: CPU-bound in the server,
#          cheap for the client
#
#   bash benches/workers.sh [--duration S] [WORKLOAD...]   (under flock, see README)
#
# Nothing is pinned: with 2 workers on a 2-core machine the load generator
# competes for the same cores. Only 127.0.0.1; every process started here
# is killed by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=4
if [ "${1:-}" = "--duration" ]; then DUR=${2:?--duration needs seconds}; shift 2; fi
WORKLOADS=${*:-small churn churn1 large list}

cargo build --release --quiet
cargo build --release --quiet --bench loadgen
KEEL=target/release/keel
LG=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -1)
ROOT=$(mktemp -d /tmp/keel-workers-bench.XXXXXX)
echo hello > "$ROOT/index.html"
truncate -s 256M "$ROOT/big"
mkdir "$ROOT/many"
(cd "$ROOT/many" && seq -f 'file-%04g.txt' 2000 | xargs touch)
SUP=
cleanup() { [ -n "$SUP" ] && kill -KILL "$SUP" 2>/dev/null; rm -rf "$ROOT"; }
trap cleanup EXIT

# start MODE: MODE is "plain" (no supervisor) or a worker count.
start() {
  local log=$ROOT/log args=("$ROOT" -a 127.0.0.1 -p 0 --status-path /status --list)
  [ "$1" = plain ] || args+=(--workers "$1")
  RUST_LOG=warn,keel=info,keelhttp=warn "$KEEL" "${args[@]}" 2>"$log" &
  SUP=$!
  PORT=
  for _ in $(seq 100); do
    sleep 0.05
    PORT=$(grep -o '127.0.0.1:[0-9]*' "$log" | head -1 | cut -d: -f2 || true)
    if [ -n "$PORT" ] && curl -s -o /dev/null "http://127.0.0.1:$PORT/status"; then break; fi
  done
  if [ "$1" = plain ]; then PIDS=$SUP; else
    for _ in $(seq 100); do
      [ "$(pgrep -P "$SUP" | wc -l)" = "$1" ] && break; sleep 0.05
    done
    PIDS=$(pgrep -P "$SUP" | paste -sd,)
  fi
}

stop() { kill -TERM "$SUP"; wait "$SUP" 2>/dev/null || true; SUP=; }

# Each worker's request count, asked on new connections until all answered.
shares() {
  local want=$1 seen=""
  for _ in $(seq 200); do
    local j; j=$(curl -s -H 'Connection: close' "http://127.0.0.1:$PORT/status")
    local pid; pid=$(echo "$j" | grep -o '"pid":[0-9]*' | cut -d: -f2)
    local req; req=$(echo "$j" | grep -o '"requests":[0-9]*' | cut -d: -f2)
    case " $seen " in *" $pid="*) ;; *) seen="$seen $pid=$req" ;; esac
    [ "$(echo $seen | wc -w)" -ge "$want" ] && break
  done
  echo "$seen"
}

for w in $WORKLOADS; do
  for mode in plain 1 2; do
    start "$mode"
    case $w in
      small) a=(-w small -c 64 -u "http://127.0.0.1:$PORT/index.html") ;;
      churn) a=(-w churn -c 16 -u "http://127.0.0.1:$PORT/index.html") ;;
      churn1) a=(-w churn -c 1 -u "http://127.0.0.1:$PORT/index.html") ;;
      large) a=(-w large -c 2 -u "http://127.0.0.1:$PORT/big") ;;
      list) a=(-w large -c 8 -u "http://127.0.0.1:$PORT/many/") ;;
    esac
    out=$("$LG" "${a[@]}" -d "$DUR" -p "$PIDS" --label "$w/$mode" ${MAXREQ:+--max-requests $MAXREQ} | grep -v '^#')
    get() { echo "$out" | tr ' ' '\n' | grep "^$1=" | cut -d= -f2; }
    sh=""
    [ "$mode" = 2 ] && sh="shares:$(shares 2)"
    printf '%-7s %-6s req/s %-9s gb/s %-6s cpu_us/req %-7s errors %s %s\n' \
      "$w" "$mode" "$(get req_s)" "$(get gb_s)" "$(get cpu_us_per_req)" "$(get errors)" "$sh"
    stop
  done
done
