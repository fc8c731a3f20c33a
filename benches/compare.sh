#!/usr/bin/env bash
# keel against nginx and lighttpd on five workloads, with benches/loadgen.rs
# as the client:
#
#   plain13  keep-alive GETs of a 13-byte response (keel: examples/plaintext;
#            nginx: `return 200 "Hello, World!"`; lighttpd: a 13-byte file)
#   file1k   keep-alive GETs of a 1 KiB file (keel: the `keel` binary)
#   large    keep-alive GETs of a 256 MiB file, 1 MiB client reads: GB/s
#   churn    `Connection: close`, a new connection per request, 13-byte
#            response (same endpoints as plain13)
#   idle     1,000 idle keep-alive connections (one request each, the `keel`
#            binary for keel): server RSS before/after, KiB per connection
#
# Each server is pinned to CPU 0 and the client to CPU 1 (taskset); every
# run starts a fresh server; figures are medians of --reps runs (the servers
# take turns within a repetition). Server CPU per request is read from
# /proc/PID/task/*/schedstat over the measured window. Prints Markdown
# tables (figures, ratios against the best peer, keel against its goals) and
# writes an SVG bar chart of server CPU µs/request per workload.
#
#   bash benches/compare.sh [--install] [--quick] [--svg PATH] [--duration S]
#                           [--reps N] [--no-alloc]
#
#   --install     apt-get update once, then install nginx (nginx-light where
#                 it exists) and lighttpd
#   --quick       2 s runs, 1 repetition
#   --svg PATH    where the chart goes [default: benches/results.svg]
#   --duration S  measured seconds per run [default: 4]
#   --reps N      repetitions [default: 3]
#   --no-alloc    skip `cargo bench --bench alloc` (allocations per request)
#
# Defaults take about 4 minutes after the build. Only 127.0.0.1 is used;
# every process started here is killed by its PID (also on exit or ^C).
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=4
REPS=3
WARMUP=0.5
SVG=benches/results.svg
INSTALL=0
ALLOC=1
CONNS=64        # plain13, file1k
LARGE_CONNS=2
CHURN_CONNS=16
IDLE_CONNS=1000
BIG_MIB=256

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
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$REPS" in ''|*[!0-9]*|0) echo "compare.sh: --reps must be a positive integer" >&2; exit 2 ;; esac
[ "$REPS" -le 20 ] || { echo "compare.sh: at most 20 repetitions" >&2; exit 2; }
python3 -c "import sys; d=float(sys.argv[1]); sys.exit(0 if 0.2 <= d <= 120 else 1)" "$DUR" \
  || { echo "compare.sh: --duration must be 0.2..120 seconds" >&2; exit 2; }

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
LOADGEN=$(cargo bench --no-run --quiet --bench loadgen --message-format=json \
  | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "loadgen":
        print(m["executable"])' | tail -1)
[ -x "$LOADGEN" ] || { echo "compare.sh: could not build benches/loadgen.rs" >&2; exit 1; }
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

printf 'Hello, World!' > "$WWW/plaintext"                       # 13 bytes
head -c 1024 /dev/urandom > "$WWW/1k.bin"
head -c $((BIG_MIB * 1024 * 1024)) /dev/zero > "$WWW/big.bin"   # in the page cache now
chmod 644 "$WWW"/*
RESULTS=$WORK/results.txt
: > "$RESULTS"

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
    keel-plain)
      "${PIN_SERVER[@]}" env RUST_LOG=warn "$PLAIN" "$port" >"$WORK/$kind.log" 2>&1 &
      ;;
    keel-files)
      "${PIN_SERVER[@]}" env RUST_LOG=warn "$KEEL" "$WWW" --addr 127.0.0.1 --port "$port" >"$WORK/$kind.log" 2>&1 &
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
  PIDS=("${keep[@]}")
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

# The matrix: workload, loadgen workload, connections, then per server the
# server kind and path ("-" = not run).
SERVERS=(keel)
[ "$HAVE_NGINX" = 1 ] && SERVERS+=(nginx)
[ "$HAVE_LIGHTTPD" = 1 ] && SERVERS+=(lighttpd)
WORKLOADS=(plain13 file1k large churn idle)
spec() { # WORKLOAD SERVER -> "kind path lg_workload conns"
  case "$1:$2" in
    plain13:keel) echo "keel-plain /plaintext small $CONNS" ;;
    plain13:*) echo "$2 /plaintext small $CONNS" ;;
    file1k:keel) echo "keel-files /1k.bin small $CONNS" ;;
    file1k:*) echo "$2 /1k.bin small $CONNS" ;;
    large:keel) echo "keel-files /big.bin large $LARGE_CONNS" ;;
    large:*) echo "$2 /big.bin large $LARGE_CONNS" ;;
    churn:keel) echo "keel-plain /plaintext churn $CHURN_CONNS" ;;
    churn:*) echo "$2 /plaintext churn $CHURN_CONNS" ;;
    idle:keel) echo "keel-files /plaintext idle $IDLE_CONNS" ;;
    idle:*) echo "$2 /plaintext idle $IDLE_CONNS" ;;
  esac
}

START=$(date +%s)
echo "== ${#WORKLOADS[@]} workloads x ${#SERVERS[@]} servers x $REPS reps, ${DUR}s each (+${WARMUP}s warm-up)" >&2
for wl in "${WORKLOADS[@]}"; do
  for rep in $(seq "$REPS"); do
    for srv in "${SERVERS[@]}"; do
      read -r kind path lgw conns <<<"$(spec "$wl" "$srv")"
      port=$(free_port)
      if ! start_server "$kind" "$port"; then
        echo "compare.sh: $srv ($kind) did not start; see below" >&2
        tail -5 "$WORK/$kind.log" "$WORK"/*error.log 2>/dev/null >&2 || true
        stop_server "$SERVER_PID"
        continue
      fi
      dur=$DUR
      [ "$lgw" = idle ] && dur=20   # a time limit for opening, not a window
      out=$("${PIN_CLIENT[@]}" "$LOADGEN" --url "http://127.0.0.1:$port$path" --workload "$lgw" \
              --connections "$conns" --duration "$dur" --warmup "$WARMUP" --pid "$MEASURE_PIDS" \
              --clk-tck "$TICK" --label "$srv" 2>"$WORK/loadgen.err") || {
        echo "compare.sh: loadgen failed for $srv $wl: $(cat "$WORK/loadgen.err")" >&2
        out=""
      }
      stop_server "$SERVER_PID"
      [ -n "$out" ] || continue
      grep -v '^#' <<<"$out" | sed "s/^/wl=$wl rep=$rep /" >> "$RESULTS"
      grep '^#' <<<"$out" | sed "s/^# /  [$wl $rep] /" >&2
    done
  done
done
echo "== load runs took $(( $(date +%s) - START )) s" >&2

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
  "$NGINX_VER" "$LIGHTTPD_VER" "$CONNS" "$LARGE_CONNS" "$CHURN_CONNS" "$IDLE_CONNS" "$BIG_MIB" \
  "$MACHINE" <<'PY'
import statistics, sys
from html import escape

(results, svg_path, alloc_path, keel_size, reps, dur, lt_note, nginx_ver, lt_ver,
 conns, large_conns, churn_conns, idle_conns, big_mib, machine) = sys.argv[1:]

rows = []
for line in open(results):
    kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
    rows.append(kv)

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

def med(wl, srv, key):
    vals = [num(r.get(key)) for r in rows if r["wl"] == wl and r["label"] == srv]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def total(wl, srv, key):
    return int(sum(num(r.get(key)) or 0 for r in rows if r["wl"] == wl and r["label"] == srv))

def runs(wl, srv):
    return sum(1 for r in rows if r["wl"] == wl and r["label"] == srv)

SERVERS = [s for s in ("keel", "nginx", "lighttpd") if any(r["label"] == s for r in rows)]
PEERS = [s for s in SERVERS if s != "keel"]
NAMES = {
    "keel": "keel",
    "nginx": f"nginx {nginx_ver} (1 worker)",
    "lighttpd": f"{lt_note.replace('lighttpd', 'lighttpd ' + lt_ver, 1) if lt_ver else lt_note}",
}
WL = [
    ("plain13", f"13-byte response, keep-alive, {conns} conns"),
    ("file1k", f"1 KiB file, keep-alive, {conns} conns"),
    ("large", f"{big_mib} MiB file, {large_conns} conns"),
    ("churn", f"churn (Connection: close), 13 bytes, {churn_conns} conns"),
]
ENDPOINT = {
    ("plain13", "keel"): "examples/plaintext",
    ("plain13", "nginx"): "`return 200`",
    ("plain13", "lighttpd"): "a 13-byte file",
    ("churn", "keel"): "examples/plaintext",
    ("churn", "nginx"): "`return 200`",
    ("churn", "lighttpd"): "a 13-byte file",
}

def f(v, fmt="{:.2f}"):
    if v is None:
        return "" if fmt.startswith(" ") else "–"
    return fmt.format(v)

def best_peer(wl, key, lower_better):
    vals = [(med(wl, p, key), p) for p in PEERS]
    vals = [(v, p) for v, p in vals if v is not None and v > 0]
    if not vals:
        return None, None
    return (min if lower_better else max)(vals)

out = []
out.append(f"Machine: {machine}. Other work may share it: compare ratios within a run, not across runs.")
out.append("")
out.append(f"Medians of {reps} run(s) of {dur} s; server pinned to CPU 0, load (benches/loadgen.rs) to CPU 1; "
           "server CPU from /proc/PID/task/*/schedstat over the measured window (lower is better). "
           "Ratios are against the best peer for that column (CPU: keel ÷ lowest peer; GB/s: keel ÷ highest peer).")
out.append("")
out.append("| workload | server | req/s | GB/s | p50 ms | p99 ms | server CPU µs/req | CPU vs best peer | GB/s vs best peer | errors |")
out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for wl, title in WL:
    bcpu, _ = best_peer(wl, "cpu_us_per_req", True)
    bgb, _ = best_peer(wl, "gb_s", False) if wl == "large" else (None, None)
    for s in SERVERS:
        if not runs(wl, s):
            continue
        cpu = med(wl, s, "cpu_us_per_req")
        gb = med(wl, s, "gb_s") if wl == "large" else None
        name = NAMES[s] + (f" ({ENDPOINT[(wl, s)]})" if (wl, s) in ENDPOINT else "")
        p50, p99 = med(wl, s, "p50_us"), med(wl, s, "p99_us")
        out.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            title, name, f(med(wl, s, "req_s"), "{:,.0f}"), f(gb, "{:.2f}"),
            f(p50 and p50 / 1e3, "{:.3f}"), f(p99 and p99 / 1e3, "{:.3f}"),
            f(cpu, "{:.2f}" if (cpu or 0) < 1000 else "{:,.0f}"),
            f(cpu / bcpu if cpu and bcpu else None, "{:.2f}×"),
            f(gb / bgb if gb and bgb else None, "{:.2f}×"),
            total(wl, s, "errors")))
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
        NAMES[s] + (" (binary)" if s == "keel" else ""),
        f(med("idle", s, "rss_before_kib"), "{:,.0f}") + f(med("idle", s, "anon_before_kib"), " ({:,.0f})"),
        f(med("idle", s, "rss_after_kib"), "{:,.0f}") + f(med("idle", s, "anon_after_kib"), " ({:,.0f})"),
        f(k, "{:.2f}"), f(k / bk if k is not None and bk else None, "{:.2f}×"),
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

def ratio(a, b):
    return a / b if a is not None and b else None

goals = []
def goal(name, target, measured, ok):
    goals.append((name, target, measured, "–" if ok is None else ("yes" if ok else "**no**")))

for wl, label in (("plain13", "13-byte response"), ("file1k", "1 KiB file")):
    b, who = best_peer(wl, "cpu_us_per_req", True)
    r = ratio(med(wl, "keel", "cpu_us_per_req"), b)
    goal(f"CPU/req, {label}", "≤ 0.70× best peer", f(r, "{:.2f}×") + (f" (vs {who})" if who else ""),
         None if r is None else r <= 0.70)
r = ratio(med("large", "keel", "gb_s"), med("large", "lighttpd", "gb_s"))
goal(f"GB/s, {big_mib} MiB file", "≥ 1.00× lighttpd", f(r, "{:.2f}×"), None if r is None else r >= 1.0)
r = ratio(med("churn", "keel", "cpu_us_per_req"), med("churn", "nginx", "cpu_us_per_req"))
goal("CPU/req, churn", "≤ 0.90× nginx", f(r, "{:.2f}×"), None if r is None else r <= 0.90)
k = med("idle", "keel", "kib_per_conn")
goal("RSS per idle keep-alive conn", "≤ 0.5 KiB", f(k, "{:.2f} KiB"), None if k is None else k <= 0.5)
rb = med("idle", "keel", "rss_before_kib")
goal("idle RSS (keel binary, after 1 request)", "≤ 1.5 MiB (1536 KiB)",
     f(rb, "{:,.0f} KiB VmRSS") + f(med("idle", "keel", "anon_before_kib"), ", {:,.0f} KiB of it anonymous"),
     None if rb is None else rb <= 1536)
if alloc:
    worst = max([v for c, v in alloc.items() if c in ("text", "open") and v is not None] or [float("nan")])
    detail = ", ".join(f"{c} {alloc[c]:.2f}" for c in ("bare", "text", "open", "dup", "static", "churn") if c in alloc)
    goal("allocations per request, (a) text and (b) file", "0", detail, None if worst != worst else worst == 0)
else:
    goal("allocations per request", "0", "not run (cargo bench --bench alloc)", None)
ks = int(keel_size)
goal("stripped `keel` binary", "≤ 400 KiB", f"{ks / 1024:,.0f} KiB ({ks:,} bytes)", ks <= 400 * 1024)

out.append("")
out.append("| keel goal | target | measured | met |")
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
COLORS = {"keel": "#d95f02", "nginx": "#1b9e77", "lighttpd": "#7570b3"}
pw, ph, top, bottom, left = 230, 250, 70, 80, 20
bw = 46
W = left + pw * len(WL) + 20
H = top + ph + bottom
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
       'font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">'
       'Server CPU time per request (µs, lower is better)</text>',
       f'<text x="{W / 2}" y="44" text-anchor="middle" fill="#555">'
       f'{escape(f"median of {reps} run(s), server on CPU 0, load on CPU 1; each panel has its own scale")}</text>']
for i, (wl, title) in enumerate(WL):
    x0 = left + i * pw
    vals = [(s, med(wl, s, "cpu_us_per_req")) for s in SERVERS]
    vals = [(s, v) for s, v in vals if v is not None]
    vmax = max([v for _, v in vals] or [1]) * 1.18
    base = top + ph
    svg.append(f'<line x1="{x0 + 15}" y1="{base}" x2="{x0 + pw - 15}" y2="{base}" stroke="#333"/>')
    short = title.split(",")[0]
    svg.append(f'<text x="{x0 + pw / 2}" y="{base + 22}" text-anchor="middle" font-weight="bold">{escape(short)}</text>')
    bcpu, _ = best_peer(wl, "cpu_us_per_req", True)
    kv = med(wl, "keel", "cpu_us_per_req")
    if kv and bcpu:
        svg.append(f'<text x="{x0 + pw / 2}" y="{base + 40}" text-anchor="middle" fill="#555">'
                   f'keel = {kv / bcpu:.2f}× best peer</text>')
    n = len(vals)
    start = x0 + (pw - n * bw - (n - 1) * 10) / 2
    for j, (s, v) in enumerate(vals):
        h = (ph - 20) * v / vmax
        x = start + j * (bw + 10)
        svg.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bw}" height="{h:.1f}" fill="{COLORS[s]}"/>')
        label = f"{v:.1f}" if v < 1000 else f"{v:,.0f}"
        svg.append(f'<text x="{x + bw / 2:.1f}" y="{base - h - 5:.1f}" text-anchor="middle">{label}</text>')
lx = W / 2 - 150
for j, s in enumerate(SERVERS):
    x = lx + j * 110
    svg.append(f'<rect x="{x}" y="{H - 22}" width="12" height="12" fill="{COLORS[s]}"/>')
    svg.append(f'<text x="{x + 17}" y="{H - 12}">{escape(s)}</text>')
svg.append("</svg>")
with open(svg_path, "w") as fh:
    fh.write("\n".join(svg) + "\n")
print(f"\nChart: {svg_path}")
PY
