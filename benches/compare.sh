#!/usr/bin/env bash
# keel against a bare epoll loop (the yardstick), nginx and lighttpd, with
# benches/loadgen.rs as the client. Workloads:
#
#   plain13    keep-alive GETs of a fixed 13-byte answer (keel:
#              examples/plaintext; nginx: `return 200 "Hello, World!"`;
#              lighttpd: a 13-byte file; yardstick: benches/yardstick.rs)
#   pipe16     the same, pipelined: 16 requests per write (TechEmpower style)
#   file13     keep-alive GETs of a 13-byte FILE: the `keel` binary on a temp
#              docroot with the access log off (RUST_LOG=warn), and again
#              with its default logging on (output to a file), against nginx
#              and lighttpd serving the same file
#   file1k     the same with a 1 KiB file
#   large2     keep-alive GETs of a 256 MiB file, 2 conns, 1 MiB client
#   large4     reads: GB/s (the `keel` binary, nginx, lighttpd); 2 and 4 conns
#   churn      `Connection: close`, a new connection per request, the fixed
#              13-byte answer (same endpoints as plain13)
#   churnfile  churn on the 13-byte file (the `keel` binary)
#   idle       1,000 idle keep-alive connections (one request each, the `keel`
#              binary): server RSS before/after, KiB per connection
#
# Each server is pinned to CPU 0 and the client to CPU 1 (taskset); every
# run starts a fresh server; the servers take turns within a workload, the
# workloads within a repetition; figures are medians of --reps runs. Server
# CPU per request is read from /proc/PID/task/*/schedstat over the measured
# window. Prints Markdown tables (figures; every figure also as a ratio to the
# yardstick and to the best peer; the goals of issue 9, met or missed) and
# writes an SVG bar chart of server CPU µs/request per workload.
#
#   bash benches/compare.sh [--install] [--quick] [--svg PATH] [--duration S]
#                           [--reps N] [--no-alloc] [--workloads LIST]
#                           [--raw PATH]
#
#   --install        apt-get update once, then install nginx (nginx-light
#                    where it exists) and lighttpd
#   --quick          2 s runs, 1 repetition
#   --svg PATH       where the chart goes [default: benches/results.svg]
#   --duration S     measured seconds per run [default: 4]
#   --reps N         repetitions [default: 3]
#   --no-alloc       skip `cargo bench --bench alloc` (allocations per request)
#   --workloads LIST comma-separated subset of the workloads above [default: all]
#   --raw PATH       also keep every run's key=value line (loadgen's, prefixed
#                    with wl= and rep=) in PATH
#
# Environment: KEEL_ARGS is split on spaces and appended to every command line
# of the `keel` binary (e.g. KEEL_ARGS="--file-cache 0" to measure a flag).
#
# Defaults take about 10 minutes after the build. Only 127.0.0.1 is used;
# every process started here is killed by its PID (also on exit or ^C).
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=4
REPS=3
WARMUP=0.5
SVG=benches/results.svg
RAW=""
INSTALL=0
ALLOC=1
CONNS=64        # plain13, pipe16, file13, file1k
PIPELINE=16
CHURN_CONNS=16
IDLE_CONNS=1000
BIG_MIB=256
ALL_WORKLOADS=(plain13 pipe16 file13 file1k large2 large4 churn churnfile idle)
WORKLOADS=("${ALL_WORKLOADS[@]}")
read -r -a KEEL_EXTRA <<<"${KEEL_ARGS:-}"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --install) INSTALL=1 ;;
    --quick) DUR=2; REPS=1; WARMUP=0.3 ;;
    --svg) SVG=${2:?--svg needs a path}; shift ;;
    --svg=*) SVG=${1#--svg=} ;;
    --duration) DUR=${2:?--duration needs seconds}; shift ;;
    --reps) REPS=${2:?--reps needs a count}; shift ;;
    --no-alloc) ALLOC=0 ;;
    --raw) RAW=${2:?--raw needs a path}; shift ;;
    --raw=*) RAW=${1#--raw=} ;;
    --workloads) IFS=, read -r -a WORKLOADS <<<"${2:?--workloads needs a list}"; shift ;;
    --workloads=*) IFS=, read -r -a WORKLOADS <<<"${1#--workloads=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$REPS" in ''|*[!0-9]*|0) echo "compare.sh: --reps must be a positive integer" >&2; exit 2 ;; esac
[ "$REPS" -le 20 ] || { echo "compare.sh: at most 20 repetitions" >&2; exit 2; }
python3 -c "import sys; d=float(sys.argv[1]); sys.exit(0 if 0.2 <= d <= 120 else 1)" "$DUR" \
  || { echo "compare.sh: --duration must be 0.2..120 seconds" >&2; exit 2; }
[ "${#WORKLOADS[@]}" -gt 0 ] || { echo "compare.sh: --workloads is empty" >&2; exit 2; }
for wl in "${WORKLOADS[@]}"; do
  case " ${ALL_WORKLOADS[*]} " in
    *" $wl "*) ;;
    *) echo "compare.sh: unknown workload '$wl' (one of: ${ALL_WORKLOADS[*]})" >&2; exit 2 ;;
  esac
done

if [ "$INSTALL" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  NGINX_PKG=nginx
  if apt-cache show nginx-light >/dev/null 2>&1; then NGINX_PKG=nginx-light; fi
  apt-get install -y -qq "$NGINX_PKG" lighttpd
fi
command -v python3 >/dev/null || { echo "compare.sh: python3 is needed (tables, chart)" >&2; exit 1; }
PIN_SERVER=(); PIN_CLIENT=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_SERVER=(taskset -c 0); PIN_CLIENT=(taskset -c 1)
else
  echo "compare.sh: warning: no taskset or fewer than 2 CPUs; not pinning" >&2
fi
HAVE_NGINX=0; command -v nginx >/dev/null && HAVE_NGINX=1
HAVE_LIGHTTPD=0; command -v lighttpd >/dev/null && HAVE_LIGHTTPD=1
[ "$HAVE_NGINX$HAVE_LIGHTTPD" = 11 ] || echo "compare.sh: note: nginx or lighttpd missing (--install adds them); comparing what is here" >&2

echo "== building (release)" >&2
cargo build --release --quiet --example plaintext --bin keel
bench_exe() { # NAME: builds benches/NAME.rs, prints the executable's path
  cargo bench --no-run --quiet --bench "$1" --message-format=json \
  | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1" | tail -1
}
LOADGEN=$(bench_exe loadgen)
[ -x "$LOADGEN" ] || { echo "compare.sh: could not build benches/loadgen.rs" >&2; exit 1; }
YARDSTICK=$(bench_exe yardstick)
[ -x "$YARDSTICK" ] || { echo "compare.sh: could not build benches/yardstick.rs" >&2; exit 1; }
KEEL=target/release/keel
PLAIN=target/release/examples/plaintext
TICK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# Descriptors for 1,000 idle connections on both sides.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 100)) ]; then
  echo "compare.sh: warning: ulimit -n is $(ulimit -n); the idle workload may fail" >&2
fi

WORK=$(mktemp -d /tmp/keel-compare.XXXXXX)
chmod 755 "$WORK"             # nginx workers run as an unprivileged user
WWW=$WORK/www
mkdir -m 755 "$WWW"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

printf 'Hello, World!' > "$WWW/plaintext"                       # 13 bytes (lighttpd's fixed answer)
printf 'Hello, World!' > "$WWW/13.txt"                          # the 13-byte file
head -c 1024 /dev/urandom > "$WWW/1k.bin"
head -c $((BIG_MIB * 1024 * 1024)) /dev/zero > "$WWW/big.bin"   # in the page cache now
chmod 644 "$WWW"/*
RESULTS=$WORK/results.txt
: > "$RESULTS"
# The keel binary's default output (the access log, on stderr today) goes
# here: stdout and stderr redirected to a file, as an operator would with
# `>>keel.log 2>&1`; truncated at each start.
ACCESS_LOG=$WORK/keel-access.log

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { # PORT PID
  for _ in $(seq 250); do
    kill -0 "$2" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.02
  done
  return 1
}

# start_server KIND PORT: sets SERVER_PID (to stop) and MEASURE_PIDS (CPU and
# RSS are summed over them: nginx's master and worker).
start_server() {
  local kind=$1 port=$2
  case "$kind" in
    keel)
      "${PIN_SERVER[@]}" env RUST_LOG=warn "$PLAIN" "$port" >"$WORK/$kind.log" 2>&1 &
      ;;
    keel-bin)
      "${PIN_SERVER[@]}" env RUST_LOG=warn "$KEEL" "$WWW" --addr 127.0.0.1 --port "$port" \
        ${KEEL_EXTRA[@]+"${KEEL_EXTRA[@]}"} >"$WORK/$kind.log" 2>&1 &
      ;;
    keel-bin-log)
      "${PIN_SERVER[@]}" env -u RUST_LOG "$KEEL" "$WWW" --addr 127.0.0.1 --port "$port" \
        ${KEEL_EXTRA[@]+"${KEEL_EXTRA[@]}"} >"$ACCESS_LOG" 2>&1 &
      ;;
    yardstick)
      "${PIN_SERVER[@]}" "$YARDSTICK" "$port" >"$WORK/$kind.log" 2>&1 &
      ;;
    nginx)
      cat > "$WORK/nginx.conf" <<NGX
worker_processes 1;
worker_rlimit_nofile 8192;
daemon off;
master_process on;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$port backlog=1024;
    root $WWW;
    location = /plaintext { return 200 "Hello, World!"; }
  }
}
NGX
      "${PIN_SERVER[@]}" nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" >"$WORK/$kind.log" 2>&1 &
      ;;
    lighttpd)
      cat > "$WORK/lighttpd.conf" <<LTD
server.document-root = "$WWW"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$WORK/lighttpd-error.log"
server.event-handler = "linux-sysepoll"
$LIGHTTPD_BACKEND
server.max-keep-alive-requests = 1000000
server.max-keep-alive-idle = 120
server.max-fds = 8192
server.max-connections = 4096
mimetype.assign = ( "" => "application/octet-stream" )
LTD
      "${PIN_SERVER[@]}" lighttpd -D -f "$WORK/lighttpd.conf" >"$WORK/$kind.log" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  MEASURE_PIDS=$SERVER_PID
  wait_up "$port" "$SERVER_PID" || return 1
  if [ "$kind" = nginx ]; then
    local w=""
    for _ in $(seq 100); do
      w=$(pgrep -P "$SERVER_PID" | head -1 || true)
      [ -n "$w" ] && break
      sleep 0.02
    done
    [ -n "$w" ] || return 1
    MEASURE_PIDS="$SERVER_PID,$w"
  fi
}

stop_server() {
  local p=$1
  kill "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  local keep=() q
  for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
  PIDS=(${keep[@]+"${keep[@]}"})
}

# lighttpd: the sendfile backend where this build has one (`lighttpd -V`).
LIGHTTPD_BACKEND=""
LIGHTTPD_NOTE="lighttpd (default backend)"
if [ "$HAVE_LIGHTTPD" = 1 ]; then
  if lighttpd -V 2>/dev/null | grep -q '+ linux-sendfile'; then
    printf 'server.document-root = "%s"\nserver.port = 1\nserver.network-backend = "sendfile"\n' "$WWW" > "$WORK/lt-test.conf"
    if lighttpd -tt -f "$WORK/lt-test.conf" >/dev/null 2>&1; then
      LIGHTTPD_BACKEND='server.network-backend = "sendfile"'
    else
      LIGHTTPD_BACKEND='server.network-backend = "linux-sendfile"'
    fi
    LIGHTTPD_NOTE="lighttpd (sendfile backend)"
  fi
fi

# The matrix. Server labels: keel (examples/plaintext, the fixed answer),
# keel-bin (the binary, log off), keel-bin-log (the binary, default log),
# yardstick, nginx, lighttpd.
PEERS=()
[ "$HAVE_NGINX" = 1 ] && PEERS+=(nginx)
[ "$HAVE_LIGHTTPD" = 1 ] && PEERS+=(lighttpd)
servers_for() { # WORKLOAD -> server labels
  case "$1" in
    plain13|pipe16|churn) echo keel yardstick ${PEERS[@]+"${PEERS[@]}"} ;;
    file13) echo keel-bin keel-bin-log yardstick ${PEERS[@]+"${PEERS[@]}"} ;;
    file1k|churnfile) echo keel-bin yardstick ${PEERS[@]+"${PEERS[@]}"} ;;
    large2|large4|idle) echo keel-bin ${PEERS[@]+"${PEERS[@]}"} ;;
  esac
}
spec() { # WORKLOAD SERVER -> "path loadgen_workload conns pipeline"
  case "$1:$2" in
    plain13:*) echo "/plaintext small $CONNS 1" ;;
    pipe16:*) echo "/plaintext small $CONNS $PIPELINE" ;;
    file13:*) echo "/13.txt small $CONNS 1" ;;
    file1k:*) echo "/1k.bin small $CONNS 1" ;;
    large2:*) echo "/big.bin large 2 1" ;;
    large4:*) echo "/big.bin large 4 1" ;;
    churn:*) echo "/plaintext churn $CHURN_CONNS 1" ;;
    churnfile:*) echo "/13.txt churn $CHURN_CONNS 1" ;;
    idle:*) echo "/13.txt idle $IDLE_CONNS 1" ;;
  esac
}

START=$(date +%s)
echo "== workloads ${WORKLOADS[*]} x $REPS reps, ${DUR}s each (+${WARMUP}s warm-up); keel binary extra args: ${KEEL_ARGS:-none}" >&2
for rep in $(seq "$REPS"); do
  for wl in "${WORKLOADS[@]}"; do
    for srv in $(servers_for "$wl"); do
      read -r path lgw conns pipeline <<<"$(spec "$wl" "$srv")"
      port=$(free_port)
      if ! start_server "$srv" "$port"; then
        echo "compare.sh: $srv did not start; see below" >&2
        tail -5 "$WORK/$srv.log" "$WORK"/*error.log 2>/dev/null >&2 || true
        stop_server "$SERVER_PID"
        continue
      fi
      dur=$DUR
      [ "$lgw" = idle ] && dur=20   # a time limit for opening, not a window
      out=$("${PIN_CLIENT[@]}" "$LOADGEN" --url "http://127.0.0.1:$port$path" --workload "$lgw" \
              --connections "$conns" --pipeline "$pipeline" --duration "$dur" --warmup "$WARMUP" \
              --pid "$MEASURE_PIDS" --clk-tck "$TICK" --label "$srv" 2>"$WORK/loadgen.err") || {
        echo "compare.sh: loadgen failed for $srv $wl: $(cat "$WORK/loadgen.err")" >&2
        out=""
      }
      stop_server "$SERVER_PID"
      [ -n "$out" ] || continue
      extra=""
      if [ "$srv" = keel-bin-log ]; then
        extra="log_lines=$(wc -l < "$ACCESS_LOG") log_bytes=$(stat -c %s "$ACCESS_LOG")"
      fi
      grep -v '^#' <<<"$out" | sed "s/^/wl=$wl rep=$rep /; s/\$/ $extra/" >> "$RESULTS"
      grep '^#' <<<"$out" | sed "s/^# /  [$wl $rep] /" >&2
    done
  done
done
echo "== load runs took $(( $(date +%s) - START )) s" >&2
[ -z "$RAW" ] || cp "$RESULTS" "$RAW"
if [ -s "$ACCESS_LOG" ]; then
  echo "== an access log line of the keel binary (default logging): $(grep -m1 '"GET ' "$ACCESS_LOG" || true)" >&2
fi

ALLOC_OUT=$WORK/alloc.txt
: > "$ALLOC_OUT"
if [ "$ALLOC" = 1 ]; then
  echo "== cargo bench --bench alloc" >&2
  cargo bench --quiet --bench alloc -- -n 5000 --warmup 500 > "$ALLOC_OUT" 2>&1 \
    || echo "compare.sh: the alloc bench failed: $(tail -3 "$ALLOC_OUT")" >&2
fi

KEEL_SIZE=$(stat -c %s "$KEEL")
NGINX_VER=$( (nginx -v 2>&1 || true) | sed -n 's/^nginx version: nginx\///p')
LIGHTTPD_VER=$( (lighttpd -v 2>/dev/null || true) | head -1 | awk '{print $1}' | sed 's/^lighttpd\///')
mkdir -p "$(dirname "$SVG")"
MACHINE="$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), Linux $(uname -r)"

python3 - "$RESULTS" "$SVG" "$ALLOC_OUT" "$KEEL_SIZE" "$REPS" "$DUR" "$LIGHTTPD_NOTE" \
  "$NGINX_VER" "$LIGHTTPD_VER" "$CONNS" "$PIPELINE" "$CHURN_CONNS" "$IDLE_CONNS" "$BIG_MIB" \
  "$MACHINE" "${KEEL_ARGS:-}" <<'PY'
import statistics, sys
from html import escape

(results, svg_path, alloc_path, keel_size, reps, dur, lt_note, nginx_ver, lt_ver,
 conns, pipeline, churn_conns, idle_conns, big_mib, machine, keel_args) = sys.argv[1:]

rows = []
for line in open(results):
    kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
    rows.append(kv)

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

def vals(wl, srv, key):
    out = [num(r.get(key)) for r in rows if r["wl"] == wl and r["label"] == srv]
    return [v for v in out if v is not None]

def med(wl, srv, key):
    v = vals(wl, srv, key)
    return statistics.median(v) if v else None

def per_rep(wl, srv, key):
    return {r["rep"]: num(r.get(key)) for r in rows if r["wl"] == wl and r["label"] == srv}

def total(wl, srv, key):
    return int(sum(num(r.get(key)) or 0 for r in rows if r["wl"] == wl and r["label"] == srv))

def runs(wl, srv):
    return sum(1 for r in rows if r["wl"] == wl and r["label"] == srv)

ORDER = ("keel", "keel-bin", "keel-bin-log", "yardstick", "nginx", "lighttpd")
SERVERS = [s for s in ORDER if any(r["label"] == s for r in rows)]
PEERS = [s for s in ("nginx", "lighttpd") if s in SERVERS]
KEELS = ("keel", "keel-bin", "keel-bin-log")
extra = f", `{keel_args}`" if keel_args else ""
NAMES = {
    "keel": "keel (examples/plaintext)",
    "keel-bin": f"keel binary (log off{extra})",
    "keel-bin-log": f"keel binary (default log to a file{extra})",
    "yardstick": "yardstick (bare epoll loop)",
    "nginx": f"nginx {nginx_ver} (1 worker)",
    "lighttpd": f"{lt_note.replace('lighttpd', 'lighttpd ' + lt_ver, 1) if lt_ver else lt_note}",
}
WL = [
    ("plain13", f"fixed 13-byte answer, keep-alive, {conns} conns"),
    ("pipe16", f"fixed 13-byte answer, pipelined x{pipeline}, {conns} conns"),
    ("file13", f"13-byte file, keep-alive, {conns} conns"),
    ("file1k", f"1 KiB file, keep-alive, {conns} conns"),
    ("large2", f"{big_mib} MiB file, 2 conns, 1 MiB reads"),
    ("large4", f"{big_mib} MiB file, 4 conns, 1 MiB reads"),
    ("churn", f"churn (Connection: close), fixed 13-byte answer, {churn_conns} conns"),
    ("churnfile", f"churn (Connection: close), 13-byte file, {churn_conns} conns"),
]
FIXED = ("plain13", "pipe16", "churn")
LARGE = ("large2", "large4")

def endpoint(wl, s):
    if wl in FIXED:
        return {"nginx": " (`return 200`)", "lighttpd": " (a 13-byte file)"}.get(s, "")
    if s == "yardstick":
        return " (its fixed 13 bytes)"
    return ""

def f(v, fmt="{:.2f}"):
    if v is None:
        return "" if fmt.startswith(" ") else "–"
    return fmt.format(v)

def ratio(a, b):
    return a / b if a is not None and b else None

def best_peer(wl, key, lower_better):
    vs = [(med(wl, p, key), p) for p in PEERS]
    vs = [(v, p) for v, p in vs if v is not None and v > 0]
    if not vs:
        return None, None
    return (min if lower_better else max)(vs)

out = []
out.append(f"Machine: {machine}. Other work may share it: compare ratios within a run, not across runs.")
out.append("")
out.append(f"Medians of {reps} run(s) of {dur} s; server pinned to CPU 0, load (benches/loadgen.rs) to CPU 1; "
           "server CPU from /proc/PID/task/*/schedstat over the measured window (lower is better). "
           "`vs yardstick`: CPU/req ÷ the yardstick's in the same workload (the floor: one recv and one send "
           "per request or pipelined batch). `vs best peer`: CPU ÷ the lowest of nginx and lighttpd; "
           "for the large file, GB/s ÷ the highest. The keel binary serves a temp docroot "
           "(its default logging: stdout and stderr redirected to a file).")
out.append("")
out.append("| workload | server | req/s | GB/s | p50 ms | p99 ms | server CPU µs/req | vs yardstick | vs best peer | errors |")
out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for wl, title in WL:
    bcpu, _ = best_peer(wl, "cpu_us_per_req", True)
    bgb, _ = best_peer(wl, "gb_s", False) if wl in LARGE else (None, None)
    ycpu = med(wl, "yardstick", "cpu_us_per_req")
    for s in SERVERS:
        if not runs(wl, s):
            continue
        cpu = med(wl, s, "cpu_us_per_req")
        gb = med(wl, s, "gb_s") if wl in LARGE else None
        p50, p99 = med(wl, s, "p50_us"), med(wl, s, "p99_us")
        vs_peer = ratio(gb, bgb) if wl in LARGE else ratio(cpu, bcpu)
        out.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            title, NAMES[s] + endpoint(wl, s), f(med(wl, s, "req_s"), "{:,.0f}"), f(gb, "{:.2f}"),
            f(p50 and p50 / 1e3, "{:.3f}"), f(p99 and p99 / 1e3, "{:.3f}"),
            f(cpu, "{:.2f}" if (cpu or 0) < 1000 else "{:,.0f}"),
            f(ratio(cpu, ycpu) if s != "yardstick" else None, "{:.2f}×"),
            f(vs_peer if s not in PEERS and s != "yardstick" else None, "{:.2f}×"),
            total(wl, s, "errors")))
log_lines = vals("file13", "keel-bin-log", "log_lines")
if log_lines:
    out.append("")
    out.append(f"Default log: {statistics.median(log_lines):,.0f} access lines "
               f"({statistics.median(vals('file13', 'keel-bin-log', 'log_bytes')) / 1e6:,.1f} MB) per run "
               "(median), written to a file.")
if any(runs("idle", s) for s in SERVERS):
    out.append("")
    out.append(f"Idle: {idle_conns} keep-alive connections opened one after another, one request each, then held; "
               "RSS is VmRSS (nginx: master + worker) after one warm-up request and again 0.3 s after the last connection.")
    out.append("")
    out.append("| server | RSS before KiB (anon) | RSS with idle conns KiB (anon) | KiB per conn | vs best peer | still open | errors |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    bk, _ = best_peer("idle", "kib_per_conn", True)
    for s in SERVERS:
        if not runs("idle", s):
            continue
        k = med("idle", s, "kib_per_conn")
        out.append("| {} | {} | {} | {} | {} | {} | {} |".format(
            NAMES[s],
            f(med("idle", s, "rss_before_kib"), "{:,.0f}") + f(med("idle", s, "anon_before_kib"), " ({:,.0f})"),
            f(med("idle", s, "rss_after_kib"), "{:,.0f}") + f(med("idle", s, "anon_after_kib"), " ({:,.0f})"),
            f(k, "{:.2f}"), f(k / bk if k is not None and bk and s not in PEERS else None, "{:.2f}×"),
            f(med("idle", s, "alive"), "{:.0f}"), total("idle", s, "errors")))

# Allocations from the alloc bench.
alloc = {}
try:
    for line in open(alloc_path):
        if line.startswith("alloc case="):
            kv = dict(p.split("=", 1) for p in line.split()[1:])
            alloc[kv["case"]] = num(kv["allocs_per_op"])
except OSError:
    pass

# ---- The goals of issue 9 (ratios measured side by side in this run).
goals = []
def goal(name, target, measured, ok):
    goals.append((name, target, measured, "–" if ok is None else ("met" if ok else "**missed**")))

def cpu(wl, s):
    return med(wl, s, "cpu_us_per_req")

def le(r, limit):
    return None if r is None else r <= limit

def reps(a, b):
    """CPU/req ratios a ÷ b per repetition ((workload, server) pairs): how
    much the ratio of medians can be trusted on this machine."""
    x, y = per_rep(*a, "cpu_us_per_req"), per_rep(*b, "cpu_us_per_req")
    rs = [x[k] / y[k] for k in sorted(x) if x.get(k) and y.get(k)]
    return f"; per repetition {', '.join(f'{r:.2f}' for r in rs)}" if len(rs) > 1 else ""

fixed = cpu("plain13", "keel")
for wl, label in (("file13", "13-byte file"), ("file1k", "1 KiB file")):
    k = cpu(wl, "keel-bin")
    r = ratio(k, fixed)
    goal(f"CPU/req, {label} (binary) vs keel's fixed answer", "≤ 1.05×",
         f(r, "{:.3f}×") + f" ({f(k)} vs {f(fixed)} µs{reps((wl, 'keel-bin'), ('plain13', 'keel'))})", le(r, 1.05))
    r = ratio(k, cpu(wl, "lighttpd"))
    goal(f"CPU/req, {label} (binary) vs lighttpd", "≤ 0.85×",
         f(r, "{:.3f}×") + f" ({f(k)} vs {f(cpu(wl, 'lighttpd'))} µs{reps((wl, 'keel-bin'), (wl, 'lighttpd'))})",
         le(r, 0.85))
r = ratio(cpu("pipe16", "keel"), cpu("pipe16", "yardstick"))
goal(f"CPU/req, pipelined x{pipeline} vs the yardstick", "≤ 1.30×",
     f(r, "{:.3f}×") + f" ({f(cpu('pipe16', 'keel'))} vs {f(cpu('pipe16', 'yardstick'))} µs"
     f"{reps(('pipe16', 'keel'), ('pipe16', 'yardstick'))})", le(r, 1.30))
for wl in LARGE:
    k, l = per_rep(wl, "keel-bin", "gb_s"), per_rep(wl, "lighttpd", "gb_s")
    rs = [k[rep] / l[rep] for rep in sorted(k) if k.get(rep) and l.get(rep)]
    n = wl[-1]
    goal(f"GB/s, {big_mib} MiB file, {n} conns, vs lighttpd, every repetition", "≥ 1.00× each",
         (", ".join(f"{x:.3f}×" for x in rs) or "–") +
         f" (medians {f(med(wl, 'keel-bin', 'gb_s'))} vs {f(med(wl, 'lighttpd', 'gb_s'))} GB/s)",
         None if not rs else min(rs) >= 1.0)
r = ratio(cpu("churn", "keel"), cpu("churn", "nginx"))
goal("CPU/req, churn, fixed answer vs nginx", "≤ 0.90×",
     f(r, "{:.3f}×") + f" ({f(cpu('churn', 'keel'))} vs {f(cpu('churn', 'nginx'))} µs"
     f"{reps(('churn', 'keel'), ('churn', 'nginx'))})", le(r, 0.90))
r = ratio(cpu("churnfile", "keel-bin"), cpu("churnfile", "lighttpd"))
goal("CPU/req, churn, 13-byte file (binary) vs lighttpd", "≤ 0.90×",
     f(r, "{:.3f}×") + f" ({f(cpu('churnfile', 'keel-bin'))} vs {f(cpu('churnfile', 'lighttpd'))} µs"
     f"{reps(('churnfile', 'keel-bin'), ('churnfile', 'lighttpd'))})", le(r, 0.90))
r = ratio(cpu("file13", "keel-bin-log"), cpu("file13", "keel-bin"))
goal("CPU/req, 13-byte file, default log on vs log off", "≤ 1.05×",
     f(r, "{:.3f}×") + f" ({f(cpu('file13', 'keel-bin-log'))} vs {f(cpu('file13', 'keel-bin'))} µs"
     f"{reps(('file13', 'keel-bin-log'), ('file13', 'keel-bin'))})", le(r, 1.05))
k = med("idle", "keel-bin", "kib_per_conn")
goal("RSS per idle keep-alive conn", "≤ 0.3 KiB", f(k, "{:.2f} KiB"), le(k, 0.3))
if alloc:
    worst = max([v for c, v in alloc.items() if c in ("text", "open", "static") and v is not None] or [float("nan")])
    detail = ", ".join(f"{c} {alloc[c]:.2f}" for c in ("bare", "text", "open", "dup", "static", "churn") if c in alloc)
    goal("allocations per request (text, file, StaticFiles)", "0", detail, None if worst != worst else worst == 0)
else:
    goal("allocations per request", "0", "not run (cargo bench --bench alloc)", None)
ks = int(keel_size)
goal("stripped `keel` binary (issue 6)", "≤ 400 KiB", f"{ks / 1024:,.0f} KiB ({ks:,} bytes)", ks <= 400 * 1024)

out.append("")
out.append("Goals: the ratio of the medians decides; the per-repetition ratios (same repetition, "
           "servers run one after another) show how far the noise reaches.")
out.append("")
out.append("| goal (issue 9) | target | measured | |")
out.append("| --- | --- | --- | --- |")
for g in goals:
    out.append("| {} | {} | {} | {} |".format(*g))
if alloc:
    out.append("")
    out.append("Allocations per request on the server thread (benches/alloc.rs): " +
               ", ".join(f"{c} {v:.2f}" for c, v in alloc.items()) +
               " (bare: no headers; text: `Response::text`; open: `File::open` + `Response::file`; "
               "dup: a dup'd fd; static: `StaticFiles`; churn: per connection).")
print("\n".join(out))

# ---- SVG: one panel per workload, each with its own scale.
COLORS = {"keel": "#d95f02", "keel-bin": "#e6ab02", "keel-bin-log": "#a6761d",
          "yardstick": "#666666", "nginx": "#1b9e77", "lighttpd": "#7570b3"}
PANELS = [(wl, t) for wl, t in WL if any(runs(wl, s) for s in SERVERS)]
pw, ph, top, bottom, left = 250, 250, 70, 80, 20
bw = 34
W = left + pw * max(len(PANELS), 1) + 20
H = top + ph + bottom
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
       'font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">'
       'Server CPU time per request (µs, lower is better)</text>',
       f'<text x="{W / 2}" y="44" text-anchor="middle" fill="#555">'
       f'{escape(f"median of {reps} run(s), server on CPU 0, load on CPU 1; each panel has its own scale")}</text>']
for i, (wl, title) in enumerate(PANELS):
    x0 = left + i * pw
    vs = [(s, med(wl, s, "cpu_us_per_req")) for s in SERVERS]
    vs = [(s, v) for s, v in vs if v is not None]
    vmax = max([v for _, v in vs] or [1]) * 1.18
    base = top + ph
    svg.append(f'<line x1="{x0 + 10}" y1="{base}" x2="{x0 + pw - 10}" y2="{base}" stroke="#333"/>')
    svg.append(f'<text x="{x0 + pw / 2}" y="{base + 22}" text-anchor="middle" font-weight="bold">{escape(wl)}</text>')
    yv = med(wl, "yardstick", "cpu_us_per_req")
    kv = med(wl, "keel", "cpu_us_per_req") or med(wl, "keel-bin", "cpu_us_per_req")
    if kv and yv:
        svg.append(f'<text x="{x0 + pw / 2}" y="{base + 40}" text-anchor="middle" fill="#555">'
                   f'keel = {kv / yv:.2f}× yardstick</text>')
    n = len(vs)
    start = x0 + (pw - n * bw - (n - 1) * 6) / 2
    for j, (s, v) in enumerate(vs):
        h = (ph - 20) * v / vmax
        x = start + j * (bw + 6)
        svg.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bw}" height="{h:.1f}" fill="{COLORS[s]}"/>')
        label = f"{v:.1f}" if v < 1000 else f"{v:,.0f}"
        svg.append(f'<text x="{x + bw / 2:.1f}" y="{base - h - 5:.1f}" text-anchor="middle" font-size="10">{label}</text>')
lx = W / 2 - 55 * len(SERVERS)
for j, s in enumerate(SERVERS):
    x = lx + j * 110
    svg.append(f'<rect x="{x}" y="{H - 22}" width="12" height="12" fill="{COLORS[s]}"/>')
    svg.append(f'<text x="{x + 17}" y="{H - 12}">{escape(s)}</text>')
svg.append("</svg>")
with open(svg_path, "w") as fh:
    fh.write("\n".join(svg) + "\n")
print(f"\nChart: {svg_path}")
PY
