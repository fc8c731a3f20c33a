#!/usr/bin/env bash
# Side-by-side: keel and nginx (one worker) on a 13-byte response and a 13-byte
# file, driven by wrk -t1 -c64, server pinned to CPU 0, wrk to CPU 1, medians
# of 3 runs. Reports req/s and the server's own CPU time per request
# (user+sys from /proc/PID/stat over the run): with one wrk core the client
# saturates first, so CPU per request is the honest comparison.
#
#   bash benches/wrk_vs_nginx.sh [--install] [SECONDS]
#
# Only 127.0.0.1 is used; every process started here is killed by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--install" ]; then
  shift
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light
fi
DUR=${1:-5}
command -v wrk >/dev/null || { echo "wrk is not installed (try --install)"; exit 1; }
cargo build --release --quiet --example plaintext --bin keel

WORK=$(mktemp -d); chmod 755 "$WORK"   # nginx workers run as www-data
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
printf 'Hello, World!' > "$WORK/plaintext"   # 13 bytes
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.02; done; echo "server on $1 did not start"; exit 1; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# run NAME PID URL: three wrk runs; prints "median_rps cpu_us_per_req errors"
measure() {
  local pid=$1 url=$2 out rps reqs errs t0 t1 results=()
  for i in 1 2 3; do
    t0=$(cpu_ticks "$pid")
    out=$(taskset -c 1 wrk -t1 -c64 -d"${DUR}s" --latency "$url")
    t1=$(cpu_ticks "$pid")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    errs=$(awk '/Socket errors/ {print $0}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    results+=("$rps $(awk -v d=$((t1-t0)) -v r="$reqs" -v hz="$TICK" 'BEGIN{printf "%.2f", d/hz*1e6/r}') ${errs:-none}${non2xx:+ non2xx=$non2xx}")
  done
  printf '%s\n' "${results[@]}" | sort -n | sed -n 2p
}

KP=$(free_port); taskset -c 0 env RUST_LOG=warn target/release/examples/plaintext "$KP" >/dev/null 2>&1 & PIDS+=($!); KPID=$!
FP=$(free_port); taskset -c 0 env RUST_LOG=warn target/release/keel "$WORK" --addr 127.0.0.1 --port "$FP" >/dev/null 2>&1 & PIDS+=($!); FPID=$!
NP=$(free_port)
cat > "$WORK/nginx.conf" <<NGX
worker_processes 1;
worker_cpu_affinity 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/error.log crit;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  default_type text/plain;
  server {
    listen 127.0.0.1:$NP reuseport backlog=1024;
    root $WORK;
    location = /plaintext-inline { return 200 "Hello, World!"; }
  }
}
NGX
nginx -c "$WORK/nginx.conf" -e "$WORK/error.log" & PIDS+=($!)
wait_up "$KP"; wait_up "$FP"; wait_up "$NP"
NWORKER=$(pgrep -P "${PIDS[-1]}" | head -1)
PIDS+=("$NWORKER")

echo "| workload | server | req/s (median of 3) | server CPU µs/req | errors |"
echo "| --- | --- | --- | --- | --- |"
row() { read -r rps cpu err <<<"$(measure "$2" "$3")"; echo "| $1 | $4 | $rps | $cpu | $err |"; }
row "13-byte response" "$KPID" "http://127.0.0.1:$KP/plaintext" "keel (examples/plaintext)"
row "13-byte response" "$NWORKER" "http://127.0.0.1:$NP/plaintext-inline" "nginx 1 worker (return 200)"
row "13-byte file" "$FPID" "http://127.0.0.1:$FP/plaintext" "keel (binary)"
row "13-byte file" "$NWORKER" "http://127.0.0.1:$NP/plaintext" "nginx 1 worker (static)"
echo
echo "keel binary: $(stat -c %s target/release/keel) bytes (stripped, LTO)"
