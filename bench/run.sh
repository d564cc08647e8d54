#!/usr/bin/env bash
# bench/run.sh: Sluice against nginx, HAProxy and Caddy on loopback, one command.
#
# Every proxy forwards to the same fast origin (nginx returning a fixed 1 KiB
# body). The proxy under test is pinned to CPU 0; the origin and the load
# generator share CPU 1. Rounds are interleaved (nginx, sluice-std,
# sluice-fast, haproxy, caddy, nginx, ...) so that noise from other work on the
# machine hits every proxy alike, and the figure that matters is requests per
# proxy CPU-second, compared within the same round. Method and caveats:
# docs/benchmarks.md.
#
# Usage: bench/run.sh [--quick | --full] [--profiles "a x e b c f g d"]
#                     [--engine std|fast|both] [--peers "haproxy caddy"] [--keep]
#   --quick     (default) 2 rounds x 2 s everywhere (x: 1 x 3 s), ~5 min
#   --full      the documented run, under 10 min with every profile (the
#               report gives the wall time): (a) 5 rounds x 3 s at 50 and
#               200 connections, (d) 3 x 3 s, (x) 1 x 4 s, the others
#               2 x 3 s at 50 connections (f: 10 clients x 10 streams);
#               1 s warm-up per target
#   --profiles  which profiles to run (default "a x e b c f g d"; d always runs last,
#               because it replaces the catch-all route by 10,000 routes):
#                 a  plain proxy, one route, 1 KiB response (all peers)
#                 x  (a) at 50 connections re-run disturbed: nginx and Sluice
#                    undisturbed, then with a busy loop pinned to the proxy
#                    core, then with one pinned to the load core
#                 e  TLS termination (TLS 1.3, keep-alive), one route (all peers)
#                 b  APISIX's benchmark route: limit-count + prometheus
#                 c  gateway route: key-auth + limit-count by consumer + proxy-rewrite
#                 f  HTTP/2 over TLS with h2load (nginx and Sluice)
#                 g  config churn: 100 Admin API writes/s during (a) (Sluice only)
#                 d  10,000 routes created through the Admin API, requests
#                    to the last one created
#   --engine    Sluice data-plane engine(s) (sluice.engine in config.yaml);
#               default: both when `sluice validate` accepts engine: fast, else std
#   --peers     peers besides nginx for profiles a and e (default "haproxy caddy";
#               "" for none)
#   --keep      keep the temporary directory (configs, logs, raw load-tool output)
# Environment overrides (apply to every profile): ROUNDS, DURATION (seconds),
#   WARMUP (seconds), CONNS (wrk profiles, default per profile), H2CONNS
#   (profile f, "CLIENTSxSTREAMS", default 10x10), ROUTES (10000), CHURN_RATE
#   (100 writes/s), CHURN_WRITERS (8 curl processes sharing CHURN_RATE),
#   PROXY_CPU (0), LOAD_CPU (1), PORT_OFFSET (0: added to every
#   port), MIN_CORES (0.5: rounds where the proxy got less CPU are left out of
#   medians), MIN_CPU_S (1: rounds with fewer proxy CPU-seconds are left out of
#   everything).
#
# Installs nginx, wrk, haproxy, caddy and h2load (nghttp2-client) with apt-get
# when they are missing (and says so); a peer or h2load whose package cannot be
# installed is skipped with a note in the report.
# Writes bench/results/<timestamp>.md and prints it.
set -euo pipefail
WALL_T0=$(date +%s)

MODE=quick
PROFILES_ARG=""
ENGINE_ARG=""
PEERS=${PEERS-"haproxy caddy"}
KEEP=0
while [[ $# -gt 0 ]]; do
	case "$1" in
	--quick) MODE=quick ;;
	--full) MODE=full ;;
	--profiles)
		PROFILES_ARG=${2:?--profiles needs a value}
		shift
		;;
	--engine)
		ENGINE_ARG=${2:?--engine needs std, fast or both}
		shift
		;;
	--peers)
		PEERS=${2?--peers needs a value}
		shift
		;;
	--keep) KEEP=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "run.sh: unknown argument $1 (try --help)" >&2
		exit 2
		;;
	esac
	shift
done
case $ENGINE_ARG in "" | std | fast | both) ;; *)
	echo "run.sh: --engine must be std, fast or both" >&2
	exit 2
	;;
esac

PROFILES=${PROFILES_ARG:-${PROFILES:-"a x e b c f g d"}}
# d deletes the catch-all route the other profiles use: move it to the end.
if [[ " $PROFILES " == *" d "* ]]; then
	PROFILES="$(tr ' ' '\n' <<<"$PROFILES" | sed '/^$/d; /^d$/d' | tr '\n' ' ')d"
fi
PROFILES=$(echo $PROFILES)
for p in $PROFILES; do
	case $p in a | b | c | d | e | f | g | x) ;; *)
		echo "run.sh: unknown profile $p (a b c d e f g x)" >&2
		exit 2
		;;
	esac
done
has() { [[ " $PROFILES " == *" $1 "* ]]; }

ROUTES=${ROUTES:-10000}
CHURN_RATE=${CHURN_RATE:-100}
# One sequential curl writer cannot exceed one write per Admin API round
# trip (10-25 ms on this machine under load), so the rate is split over
# several writers, each on its own route.
CHURN_WRITERS=${CHURN_WRITERS:-8}
# Per writer, per minute. curl --rate waits out the interval after each
# transfer's start, so every transfer's own set-up time is lost: offered
# exactly, 100/s arrives as 97-99/s. The writers are offered 3 % more so
# that the achieved rate (which the report gives) reaches CHURN_RATE.
CHURN_OFFER=$(((CHURN_RATE * 60 * 103 + 100 * CHURN_WRITERS - 1) / (100 * CHURN_WRITERS)))
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
# Rounds in which the proxy got fewer cores than this were starved by other
# work on the machine and are left out of the medians.
MIN_CORES=${MIN_CORES:-0.5}
# Rounds in which the proxy used fewer CPU-seconds than this are unusable
# (a handful of clock ticks): left out of every figure, even "all pairs".
MIN_CPU_S=${MIN_CPU_S:-1}

# plan PROFILE: sets P_CONNS, P_ROUNDS, P_DUR, P_WARM for one profile.
# Profile a carries the headline budgets (two connection counts, five
# rounds: its per-round ratios spread by +-15 % on this machine, so three
# made the median a coin toss near the goals); the others are trimmed to one connection count, two rounds (d:
# three) and 3-s runs so that --full stays under 10 minutes of wall time
# with two engines, two peers and the 10,000 route PUTs of d on a loaded
# 2-core machine. Each load run costs ~0.7 s on top of its duration
# (start-up, checks, pause).
plan() {
	local p=$1
	if [[ $MODE == full ]]; then
		case $p in
		a) P_CONNS=50 P_ROUNDS=5 P_DUR=3 P_WARM=1 ;;
		d) P_CONNS=50 P_ROUNDS=3 P_DUR=3 P_WARM=1 ;;
		# x: one round of nine runs; 4 s so that a proxy left with a
		# third of its core by the busy loop still uses MIN_CPU_S.
		x) P_CONNS=50 P_ROUNDS=1 P_DUR=4 P_WARM=1 ;;
		*) P_CONNS=50 P_ROUNDS=2 P_DUR=3 P_WARM=1 ;;
		esac
	else
		case $p in
		x) P_CONNS=50 P_ROUNDS=1 P_DUR=3 P_WARM=1 ;;
		*) P_CONNS=50 P_ROUNDS=2 P_DUR=2 P_WARM=1 ;;
		esac
	fi
	[[ $p == a ]] && P_CONNS="50 200"
	[[ $p == f ]] && P_CONNS=${H2CONNS:-10x10}
	[[ $p != f && -n ${CONNS:-} ]] && P_CONNS=$CONNS
	P_ROUNDS=${ROUNDS:-$P_ROUNDS}
	P_DUR=${DURATION:-$P_DUR}
	P_WARM=${WARMUP:-$P_WARM}
	return 0
}

# Ports chosen to stay clear of APISIX/Sluice defaults and of each other;
# PORT_OFFSET moves them all (e.g. to run next to another copy).
O=${PORT_OFFSET:-0}
UP_PORT=$((18081 + O))   # origin (nginx, 1 KiB body)
NGX_PORT=$((19081 + O))  # nginx proxy, plain (profiles a, b, c)
NGX_MANY=$((19082 + O))  # nginx proxy, 10,000 locations (profile d)
NGX_TLS=$((19443 + O))   # nginx proxy, TLS + HTTP/2 (profiles e, f)
HAP_PORT=$((19083 + O))  # haproxy, plain
HAP_TLS=$((19444 + O))   # haproxy, TLS
CAD_PORT=$((19084 + O))  # caddy, plain
CAD_TLS=$((19445 + O))   # caddy, TLS
declare -A SL_HTTP=([std]=$((19080 + O)) [fast]=$((19090 + O)))
declare -A SL_TLS=([std]=$((18443 + O)) [fast]=$((18453 + O)))
declare -A SL_ADMIN=([std]=$((19180 + O)) [fast]=$((19190 + O)))
declare -A SL_PROM=([std]=$((19181 + O)) [fast]=$((19191 + O)))
ADMIN_KEY=bench-admin-key
API_KEY=bench-consumer-key

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS="$REPO/bench/results"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d /tmp/sluice-bench.XXXXXX)
PIDS=()
cleanup() {
	local rc=$?
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for _ in $(seq 50); do
		local alive=0
		for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if ((KEEP)) || ((rc != 0)); then
		log "temporary files kept in $TMP"
	else
		rm -rf "$TMP"
	fi
	exit $rc
}
trap cleanup EXIT
# forget PID: drops a process this script has already stopped and reaped
# from PIDS, so that cleanup never signals a recycled pid that now belongs
# to someone else's process.
forget() {
	local p keep=()
	for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}
# stop PID: TERM, reap, forget (for helpers started per round: churn
# writers, CPU hogs).
stop() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	forget "$1"
}
trap 'exit 130' INT TERM
NOTES="$TMP/notes.md"
: >"$NOTES"

# ---------------------------------------------------------------- tools
# apt_install PKG...: installs what it is given, one package at a time so
# that one unavailable package does not block the others; returns non-zero
# if any failed.
APT_UPDATED=0
apt_install() {
	local pkg rc=0
	[[ $(id -u) == 0 ]] || {
		log "not root: cannot install $*"
		return 1
	}
	for pkg in "$@"; do
		log "installing with apt-get: $pkg"
		if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >&2; then
			if ((!APT_UPDATED)); then
				apt-get update >&2 || true
				APT_UPDATED=1
			fi
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >&2 || rc=1
		fi
	done
	return $rc
}
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
	apt_install "${need[@]}" || die "could not install ${need[*]} (install them yourself)"
fi
# Optional tools: a peer or h2load that cannot be installed is skipped.
ACTIVE_PEERS=""
for peer in $PEERS; do
	case $peer in haproxy | caddy) ;; *) die "unknown peer $peer (haproxy, caddy)" ;; esac
	if ! command -v "$peer" >/dev/null; then
		if ! apt_install "$peer" || ! command -v "$peer" >/dev/null; then
			log "$peer unavailable: skipped"
			echo "- Peer $peer skipped: the Debian package could not be installed." >>"$NOTES"
			continue
		fi
		echo "- Peer $peer was installed by this run (apt-get install $peer)." >>"$NOTES"
	fi
	ACTIVE_PEERS="$ACTIVE_PEERS $peer"
done
ACTIVE_PEERS=$(echo $ACTIVE_PEERS)
if has f && ! command -v h2load >/dev/null; then
	if ! apt_install nghttp2-client || ! command -v h2load >/dev/null; then
		log "h2load unavailable: profile f skipped"
		echo "- Profile f skipped: h2load (Debian package nghttp2-client) could not be installed." >>"$NOTES"
		PROFILES=$(tr ' ' '\n' <<<"$PROFILES" | sed '/^f$/d' | tr '\n' ' ')
		PROFILES=$(echo $PROFILES)
	else
		echo "- h2load was installed by this run (apt-get install nghttp2-client)." >>"$NOTES"
	fi
fi
((${#need[@]})) || log "nginx, wrk, curl, openssl, taskset present; peers: ${ACTIVE_PEERS:-none}"
command -v go >/dev/null || die "go not on PATH"
(($(nproc) >= 2)) || die "needs at least 2 CPUs (proxy on CPU $PROXY_CPU, load on CPU $LOAD_CPU)"

# ---------------------------------------------------------------- build
log "building sluice"
(cd "$REPO" && go build -o "$TMP/bin/sluice" ./cmd/sluice) || die "go build ./cmd/sluice failed"
SLUICE_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" status --porcelain -- cmd internal go.mod 2>/dev/null) ]]; then
	SLUICE_REV="$SLUICE_REV + uncommitted changes in the working tree"
fi
# Engines: the fast engine is there when validate accepts it.
mkdir -p "$TMP/probe"
printf 'sluice:\n  engine: fast\n' >"$TMP/probe/config.yaml"
FAST_OK=0
"$TMP/bin/sluice" validate -c "$TMP/probe/config.yaml" >/dev/null 2>&1 && FAST_OK=1
case ${ENGINE_ARG:-auto} in
auto) if ((FAST_OK)); then ENGINES="std fast"; else ENGINES=std; fi ;;
both) ENGINES="std fast" ;;
*) ENGINES=$ENGINE_ARG ;;
esac
if [[ " $ENGINES " == *" fast "* ]] && ((!FAST_OK)); then
	die "this build rejects sluice.engine: fast ($("$TMP/bin/sluice" validate -c "$TMP/probe/config.yaml" 2>&1 | head -1))"
fi
((FAST_OK)) || echo "- The fast engine is not in this build (\`sluice validate\` rejects \`sluice.engine: fast\`): std only." >>"$NOTES"
log "sluice engines: $ENGINES; profiles: $PROFILES"

ports=($UP_PORT $NGX_PORT $NGX_MANY $NGX_TLS $HAP_PORT $HAP_TLS $CAD_PORT $CAD_TLS)
for e in $ENGINES; do ports+=(${SL_HTTP[$e]} ${SL_TLS[$e]} ${SL_ADMIN[$e]} ${SL_PROM[$e]}); done
for p in "${ports[@]}"; do
	if [[ -n $(ss -Hltn "sport = :$p" 2>/dev/null) ]]; then
		die "port $p is in use (another bench run?); free it or set PORT_OFFSET"
	fi
done

# ---------------------------------------------------------------- helpers
CLK_TCK=$(getconf CLK_TCK)

# tree PID: the pid and its direct children (nginx master + worker; sluice).
tree() {
	local p=$1
	echo "$p"
	cat /proc/"$p"/task/*/children 2>/dev/null | tr ' ' '\n' | sed '/^$/d'
}
# ticks PIDS...: utime+stime of all threads of these processes, in clock ticks.
ticks() {
	local s=0 p t
	for p in "$@"; do
		# Fields after "pid (comm) ": $12 = utime, $13 = stime.
		t=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' /proc/"$p"/stat 2>/dev/null || echo 0)
		s=$((s + t))
	done
	echo "$s"
}
# rss_kb PIDS...: summed VmRSS.
rss_kb() {
	local s=0 p r
	for p in "$@"; do
		r=$(awk '/^VmRSS:/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0)
		s=$((s + ${r:-0}))
	done
	echo "$s"
}
# pss_kb PIDS...: summed proportional set size (shared pages split between
# nginx's master and worker instead of counted twice as RSS does).
pss_kb() {
	local s=0 p r
	for p in "$@"; do
		r=$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null || echo 0)
		s=$((s + ${r:-0}))
	done
	echo "$s"
}
# cpustat N: "busy total" jiffies of CPU N from /proc/stat.
cpustat() {
	awk -v c="cpu$1" '$1 == c {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}
now() { date +%s.%N; }

wait_http() { # wait_http URL [curl args...]: up to 10 s for a 200.
	local url=$1
	shift
	for _ in $(seq 100); do
		[[ $(curl -s -o /dev/null -w '%{http_code}' "$@" "$url" 2>/dev/null) == 200 ]] && return 0
		sleep 0.1
	done
	return 1
}

# check NAME URL [curl args...]: the proxy answers 200 with the origin's
# 1 KiB body and marker header (and $CHECK_HDR when set); aborts otherwise.
CHECK_HDR=""
check() {
	local name=$1 url=$2
	shift 2
	local out
	out=$(curl -s -D - -o "$TMP/check.body" "$@" "$url") || die "$name: $url unreachable"
	grep -q '^HTTP/[0-9.]* 200' <<<"$out" || die "$name: $url: $(head -1 <<<"$out")"
	grep -qi '^x-bench-origin: 1' <<<"$out" || die "$name: $url: origin marker header missing"
	[[ -z $CHECK_HDR ]] || grep -qi "^$CHECK_HDR" <<<"$out" || die "$name: $url: header $CHECK_HDR missing"
	[[ $(stat -c %s "$TMP/check.body") == 1024 ]] || die "$name: $url: body is not 1024 bytes"
}

admin() { # admin ENGINE METHOD PATH [curl args...]: Admin API call, prints the status.
	local e=$1 m=$2 path=$3
	shift 3
	curl -s -o "$TMP/admin.out" -w '%{http_code}' -X "$m" -H "X-API-KEY: $ADMIN_KEY" \
		"http://127.0.0.1:${SL_ADMIN[$e]}/apisix/admin/$path" "$@"
}
admin_ok() { # admin_ok ENGINE METHOD PATH [curl args...]: dies unless 200/201.
	local st
	st=$(admin "$@")
	[[ $st == 20[01] ]] || die "sluice-$1: $2 $3: $st $(cat "$TMP/admin.out")"
}

# ---------------------------------------------------------------- TLS material
# SANs: bench.local for curl checks, 127.0.0.1 for wrk (which sends the IP
# as SNI), localhost for h2load (which sends no SNI for an IP literal).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 2 -subj /CN=bench.local \
	-addext "subjectAltName=DNS:bench.local,DNS:localhost,IP:127.0.0.1" 2>/dev/null

# ---------------------------------------------------------------- origin
mkdir -p "$TMP/origin" "$TMP/nginx"
BODY=$(head -c 1024 /dev/zero | tr '\0' 'x')
temp_paths() { # nginx temp paths inside our own dir, not /var/lib/nginx.
	local d=$1
	echo "client_body_temp_path $d/cb; proxy_temp_path $d/pt; fastcgi_temp_path $d/ft; uwsgi_temp_path $d/ut; scgi_temp_path $d/st;"
}
# /orders/ answers the same body with one more header, so that profile c can
# check the proxy rewrote /api/v1/orders/N to /orders/N.
cat >"$TMP/origin/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $TMP/origin/nginx.pid;
error_log $TMP/origin/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  $(temp_paths "$TMP/origin")
  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    default_type application/octet-stream;
    location / {
      add_header X-Bench-Origin 1;
      return 200 "$BODY";
    }
    location /orders/ {
      add_header X-Bench-Origin 1;
      add_header X-Bench-Rewritten 1;
      return 200 "$BODY";
    }
  }
}
EOF
taskset -c "$LOAD_CPU" nginx -e "$TMP/origin/error.log" -p "$TMP/origin" -c "$TMP/origin/nginx.conf" \
	>"$TMP/origin/stdout.log" 2>&1 &
PIDS+=($!)

# ---------------------------------------------------------------- nginx proxies
# Two nginx proxies, both pinned like Sluice: "nginx" for profiles a, b, c,
# e and f, "nginx-many" with the 10,000 locations of profile d, so the big
# configuration does not inflate the memory figures of the other profiles.
# Both set the same X-Forwarded-* headers APISIX (and so Sluice) adds, keep
# upstream connections alive (pool of 320, APISIX's default
# keepalive_pool.size), and do not cap client keep-alive requests (Sluice does
# not either). TLS: same certificate, TLS 1.3 with AES-128-GCM first, which is
# what Go's crypto/tls picks on hardware with AES instructions; http2 on the
# TLS listener for profile f (wrk offers no ALPN, so profile e stays HTTP/1.1).
nginx_proxy_conf() { # nginx_proxy_conf DIR SERVERS...
	local d=$1
	shift
	cat <<EOF
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  $(temp_paths "$d")
  upstream origin {
    server 127.0.0.1:$UP_PORT;
    keepalive 320;
  }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host \$http_host;
  proxy_set_header X-Real-IP \$remote_addr;
  proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Proto \$scheme;
  proxy_set_header X-Forwarded-Host \$host;
  proxy_set_header X-Forwarded-Port \$server_port;
EOF
	printf '%s\n' "$@"
	echo "}"
}
mkdir -p "$TMP/nginx-many"
# Profile c's nginx equivalent: the API key checked against a constant (401
# otherwise) and the same regex rewrite; nginx has no request counter like
# limit-count, so that part has no counterpart.
nginx_proxy_conf "$TMP/nginx" "  server {
    listen 127.0.0.1:$NGX_PORT backlog=4096;
    location / { proxy_pass http://origin; }
    location /api/v1/orders/ {
      if (\$http_apikey != \"$API_KEY\") { return 401; }
      rewrite ^/api/v1/orders/(.*)\$ /orders/\$1 break;
      proxy_pass http://origin;
    }
  }
  server {
    listen 127.0.0.1:$NGX_TLS ssl http2 backlog=4096;
    ssl_certificate $TMP/cert.pem;
    ssl_certificate_key $TMP/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
    location / { proxy_pass http://origin; }
  }" >"$TMP/nginx/nginx.conf"
# Profile d: one exact-match location per route, like APISIX's exact uri.
if has d; then
	nginx_proxy_conf "$TMP/nginx-many" "  server {
    listen 127.0.0.1:$NGX_MANY backlog=4096;
$(awk -v n="$ROUTES" 'BEGIN { for (i = 1; i <= n; i++) printf "    location = /r/%d { proxy_pass http://origin; }\n", i }')
  }" >"$TMP/nginx-many/nginx.conf"
fi
taskset -c "$PROXY_CPU" nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
	>"$TMP/nginx/stdout.log" 2>&1 &
NGX_PID=$!
PIDS+=($NGX_PID)
if has d; then
	taskset -c "$PROXY_CPU" nginx -e "$TMP/nginx-many/error.log" -p "$TMP/nginx-many" -c "$TMP/nginx-many/nginx.conf" \
		>"$TMP/nginx-many/stdout.log" 2>&1 &
	NGXM_PID=$!
	PIDS+=($NGXM_PID)
fi

# ---------------------------------------------------------------- peers
# HAProxy and Caddy, pinned like nginx, one thread / GOMAXPROCS=1, same
# upstream keep-alive pool size, same X-Forwarded-*/X-Real-IP headers, no
# access logging, same certificate and TLS 1.3 cipher order.
declare -A PEER_PID PEER_HTTP PEER_TLS
if [[ " $ACTIVE_PEERS " == *" haproxy "* ]]; then
	mkdir -p "$TMP/haproxy"
	cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/haproxy/bench.pem"
	cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.2
  ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
defaults
  mode http
  timeout connect 5s
  timeout client 75s
  timeout server 75s
  timeout http-keep-alive 75s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend bench
  bind 127.0.0.1:$HAP_PORT
  bind 127.0.0.1:$HAP_TLS ssl crt $TMP/haproxy/bench.pem alpn http/1.1
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
  http-request set-header X-Forwarded-Proto https if { ssl_fc }
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  default_backend origin
backend origin
  server origin 127.0.0.1:$UP_PORT pool-max-conn 320
EOF
	haproxy -c -q -f "$TMP/haproxy/haproxy.cfg" >"$TMP/haproxy/check.log" 2>&1 ||
		die "haproxy config rejected: $(tail -3 "$TMP/haproxy/check.log")"
	taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy/haproxy.cfg" >"$TMP/haproxy/haproxy.log" 2>&1 &
	PEER_PID[haproxy]=$!
	PIDS+=(${PEER_PID[haproxy]})
	PEER_HTTP[haproxy]=$HAP_PORT PEER_TLS[haproxy]=$HAP_TLS
fi
if [[ " $ACTIVE_PEERS " == *" caddy "* ]]; then
	mkdir -p "$TMP/caddy/data" "$TMP/caddy/config"
	caddy_site() { # caddy_site ADDRESS [TLS directive]
		cat <<EOF
$1 {
  ${2:-}
  reverse_proxy 127.0.0.1:$UP_PORT {
    header_up X-Real-IP {remote_host}
    header_up X-Forwarded-Port {http.request.port}
    transport http {
      keepalive 75s
      keepalive_idle_conns 320
      keepalive_idle_conns_per_host 320
    }
  }
}
EOF
	}
	{
		cat <<EOF
{
  admin off
  auto_https off
  servers {
    protocols h1 h2
  }
}
EOF
		# Port-only site addresses: any Host matches, as with the others.
		caddy_site "http://:$CAD_PORT" "bind 127.0.0.1"
		caddy_site "https://:$CAD_TLS" "bind 127.0.0.1
  tls $TMP/cert.pem $TMP/key.pem {
    protocols tls1.2 tls1.3
  }"
	} >"$TMP/caddy/Caddyfile"
	(cd "$TMP/caddy" && HOME="$TMP/caddy" XDG_DATA_HOME="$TMP/caddy/data" XDG_CONFIG_HOME="$TMP/caddy/config" \
		exec taskset -c "$PROXY_CPU" caddy run --adapter caddyfile --config "$TMP/caddy/Caddyfile") \
		>"$TMP/caddy/caddy.log" 2>&1 &
	PEER_PID[caddy]=$!
	PIDS+=(${PEER_PID[caddy]})
	PEER_HTTP[caddy]=$CAD_PORT PEER_TLS[caddy]=$CAD_TLS
fi

# ---------------------------------------------------------------- sluice
# One Sluice process per engine, each with its own ports, store and
# Prometheus export address, both pinned to the proxy core (the idle one
# costs nothing measurable).
declare -A SL_PID SL_TREE
for e in $ENGINES; do
	mkdir -p "$TMP/sluice-$e"
	cat >"$TMP/sluice-$e/config.yaml" <<EOF
sluice:
  engine: $e
apisix:
  node_listen:
    - ip: 127.0.0.1
      port: ${SL_HTTP[$e]}
  ssl:
    enable: true
    listen:
      - ip: 127.0.0.1
        port: ${SL_TLS[$e]}
deployment:
  admin:
    admin_key:
      - name: admin
        key: $ADMIN_KEY
        role: admin
    admin_listen:
      ip: 127.0.0.1
      port: ${SL_ADMIN[$e]}
plugin_attr:
  prometheus:
    export_addr:
      ip: 127.0.0.1
      port: ${SL_PROM[$e]}
EOF
	(cd "$TMP/sluice-$e" && exec taskset -c "$PROXY_CPU" "$TMP/bin/sluice" run -c "$TMP/sluice-$e/config.yaml") \
		>"$TMP/sluice-$e/sluice.log" 2>&1 &
	SL_PID[$e]=$!
	PIDS+=(${SL_PID[$e]})
done

wait_http "http://127.0.0.1:$UP_PORT/" || die "origin did not start: $(tail -3 "$TMP/origin/error.log")"
wait_http "http://127.0.0.1:$NGX_PORT/" || die "nginx proxy did not start: $(tail -3 "$TMP/nginx/error.log")"
check nginx "http://127.0.0.1:$NGX_PORT/hello"
if has d; then
	wait_http "http://127.0.0.1:$NGX_MANY/r/1" || die "nginx-many did not start: $(tail -3 "$TMP/nginx-many/error.log")"
fi
for peer in $ACTIVE_PEERS; do
	wait_http "http://127.0.0.1:${PEER_HTTP[$peer]}/hello" ||
		die "$peer did not start: $(tail -5 "$TMP/$peer/$peer.log")"
	check "$peer" "http://127.0.0.1:${PEER_HTTP[$peer]}/hello"
done

for e in $ENGINES; do
	wait_http "http://127.0.0.1:${SL_ADMIN[$e]}/apisix/admin/routes" -H "X-API-KEY: $ADMIN_KEY" ||
		die "sluice-$e Admin API not ready: $(tail -5 "$TMP/sluice-$e/sluice.log")"
	# One upstream object shared by all routes (APISIX defaults: roundrobin,
	# keepalive_pool 320 connections).
	admin_ok "$e" PUT upstreams/1 -d "{\"type\":\"roundrobin\",\"nodes\":{\"127.0.0.1:$UP_PORT\":1}}"
	admin_ok "$e" PUT routes/catchall -d '{"uri":"/*","upstream_id":"1"}'
	wait_http "http://127.0.0.1:${SL_HTTP[$e]}/hello" || die "sluice-$e route not serving: $(tail -5 "$TMP/sluice-$e/sluice.log")"
	check "sluice-$e" "http://127.0.0.1:${SL_HTTP[$e]}/hello"
	SL_TREE[$e]=$(tree "${SL_PID[$e]}" | tr '\n' ' ')
done

NGX_TREE=$(tree "$NGX_PID" | tr '\n' ' ')
NGXM_TREE=""
has d && NGXM_TREE=$(tree "$NGXM_PID" | tr '\n' ' ')
declare -A PEER_TREE
for peer in $ACTIVE_PEERS; do PEER_TREE[$peer]=$(tree "${PEER_PID[$peer]}" | tr '\n' ' '); done
log "pinned to CPU $(taskset -pc "$NGX_PID" | awk '{print $NF}'): nginx $NGX_TREE$(has d && echo ", nginx-many $NGXM_TREE")$(for p in $ACTIVE_PEERS; do printf ', %s %s' "$p" "${PEER_TREE[$p]}"; done)$(for e in $ENGINES; do printf ', sluice-%s %s' "$e" "${SL_TREE[$e]}"; done)"

# ---------------------------------------------------------------- measuring
ROWS="$TMP/rows.tsv"
: >"$ROWS"

to_ms() { # wrk latency ("512.00us", "1.23ms", "1.01s", "2.00m") -> ms
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
		else printf "nan" }'
}

# churn_cfg ENGINE N W: a curl config of N Admin API PUTs of an unrelated
# route churn-W (same id, a new desc each time, so each one is a real
# change); writer W has its own route.
churn_cfg() {
	awk -v n="$2" -v w="$3" -v a="http://127.0.0.1:${SL_ADMIN[$1]}/apisix/admin/routes/churn-$3" -v k="$ADMIN_KEY" 'BEGIN {
		for (i = 1; i <= n; i++) {
			if (i > 1) print "next"
			printf "url = \"%s\"\nrequest = \"PUT\"\nheader = \"X-API-KEY: %s\"\n", a, k
			printf "data = \"{\\\"uri\\\":\\\"/churn-%d\\\",\\\"upstream_id\\\":\\\"1\\\",\\\"desc\\\":\\\"churn %d\\\"}\"\n", w, i
			print "output = \"/dev/null\""
			print "write-out = \"%{stderr}%{http_code}\\n\""
		}
	}'
}

# measure PROFILE CONNS ROUND TARGET PIDS TOOL DUR URL [load-tool args...]:
# one load run, one row in $ROWS; PIDS are the processes whose CPU and
# memory count for TARGET. TOOL is wrk (CONNS connections) or h2load (CONNS
# = CLIENTSxSTREAMS). A TARGET ending in +churn runs the Admin API writers
# alongside; one ending in +cpuhog (+loadhog) runs a busy loop pinned to
# the proxy core (the load core) for the length of the load run.
measure() {
	local profile=$1 conns=$2 round=$3 target=$4 pids=$5 tool=$6 dur=$7 url=$8
	shift 8
	local out="$TMP/$tool-$profile-c$conns-r$round-$target.txt"
	local t0 t1 c0 c1 l0 l1 w0 w1 cpids=() hog="" h0 h1 extra="-" w
	if [[ $target == *+churn ]]; then
		local e=${target#sluice-}
		e=${e%+churn}
		# CHURN_WRITERS sequential curl writers, each at its share of
		# CHURN_RATE (per minute, so that the shares need not be whole
		# numbers per second), each with more writes than fit in the run;
		# they are stopped when the load run ends. Their -w output goes to
		# stderr, which is unbuffered, so a stopped writer's statuses are all
		# there.
		for w in $(seq "$CHURN_WRITERS"); do
			[[ -s $TMP/churn-$e-$dur-$w.curl ]] ||
				churn_cfg "$e" $(((dur + 3) * CHURN_RATE / CHURN_WRITERS + 1)) "$w" >"$TMP/churn-$e-$dur-$w.curl"
		done
		for w in $(seq "$CHURN_WRITERS"); do
			taskset -c "$LOAD_CPU" curl -s --rate "${CHURN_OFFER}/m" \
				-K "$TMP/churn-$e-$dur-$w.curl" >/dev/null 2>"$out.churn$w" &
			cpids+=($!)
			PIDS+=($!)
		done
		sleep 0.2
	fi
	if [[ $target == *+cpuhog || $target == *+loadhog ]]; then
		# A shell busy loop (no system calls, no memory traffic to speak of):
		# the kind of competitor the scheduler gives an equal share of the
		# core. Stopped right after the load run, and by cleanup on any exit.
		local hcpu=$PROXY_CPU
		[[ $target == *+loadhog ]] && hcpu=$LOAD_CPU
		taskset -c "$hcpu" sh -c 'while :; do :; done' &
		hog=$!
		PIDS+=($hog)
		sleep 0.3
		h0=$(ticks "$hog")
	fi
	read -r c0 _ < <(cpustat "$PROXY_CPU")
	read -r l0 _ < <(cpustat "$LOAD_CPU")
	# shellcheck disable=SC2086
	t0=$(ticks $pids)
	# Writes answered so far: the achieved rate is counted over the load
	# run only, not over the writers' start-up and stop.
	local n0=0 n1=0
	((${#cpids[@]})) && n0=$(cat "$out".churn* | wc -l)
	w0=$(now)
	case $tool in
	wrk)
		taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${dur}s" --timeout 5s --latency "$@" "$url" >"$out" 2>&1 ||
			die "wrk failed: $(tail -3 "$out")"
		;;
	h2load)
		taskset -c "$LOAD_CPU" h2load -t1 -c"${conns%x*}" -m"${conns#*x}" -D"$dur" --log-file="$out.log" "$@" "$url" >"$out" 2>&1 ||
			die "h2load failed: $(tail -3 "$out")"
		;;
	esac
	w1=$(now)
	((${#cpids[@]})) && n1=$(cat "$out".churn* | wc -l)
	# shellcheck disable=SC2086
	t1=$(ticks $pids)
	read -r c1 _ < <(cpustat "$PROXY_CPU")
	read -r l1 _ < <(cpustat "$LOAD_CPU")
	if [[ -n $hog ]]; then
		h1=$(ticks "$hog")
		stop "$hog"
		extra=$(awk -v d=$((h1 - h0)) -v hz="$CLK_TCK" -v a="$w0" -v b="$w1" 'BEGIN { printf "hog:%.2f", d / hz / (b - a) }')
	fi
	if ((${#cpids[@]})); then
		local wok wn p
		for p in "${cpids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
		for p in "${cpids[@]}"; do stop "$p"; done
		wok=$(cat "$out".churn* | grep -c '^20[01]$' || true)
		wn=$(cat "$out".churn* | grep -c '^[0-9][0-9][0-9]$' || true)
		extra=$(awk -v ok="$wok" -v n="$wn" -v d=$((n1 - n0)) -v a="$w0" -v b="$w1" 'BEGIN { printf "%d/%d@%.0f", ok, n, d / (b - a) }')
	fi
	local reqs rps p50 p99 non2xx sockerr rss pss
	case $tool in
	wrk)
		reqs=$(awk '/requests in/ {print $1; exit}' "$out")
		rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
		p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
		p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
		non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
		sockerr=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$out")
		;;
	h2load)
		# "requests: T total, S started, D done, OK succeeded, F failed, E errored, X timeout"
		reqs=$(awk '/^requests:/ {print $6; exit}' "$out")
		rps=$(awk '/^finished in/ {print $4; exit}' "$out")
		non2xx=$(awk '/^status codes:/ {gsub(/,/, ""); print $5 + $7 + $9; exit}' "$out")
		sockerr=$(awk '/^requests:/ {print $10; exit}' "$out")
		# Per-request log: start (us since epoch), status, us to end of response.
		read -r p50 p99 < <(cut -f3 "$out.log" | sort -n | awk '{a[NR] = $1} END {
			if (NR == 0) { print "nan nan"; exit }
			i = int(NR * 0.5); if (i < 1) i = 1; j = int(NR * 0.99); if (j < 1) j = 1
			printf "%.3f %.3f\n", a[i] / 1000, a[j] / 1000 }')
		rm -f "$out.log"
		;;
	esac
	# shellcheck disable=SC2086
	rss=$(rss_kb $pids)
	# shellcheck disable=SC2086
	pss=$(pss_kb $pids)
	# CPU figures are in cores (CPU-seconds per wall second) over the load run.
	awk -v OFS='\t' -v p="$profile" -v c="$conns" -v r="$round" -v t="$target" \
		-v reqs="${reqs:-0}" -v rps="${rps:-0}" -v dt=$((t1 - t0)) -v hz="$CLK_TCK" \
		-v w0="$w0" -v w1="$w1" -v p50="$p50" -v p99="$p99" -v n2="${non2xx:-0}" -v se="${sockerr:-0}" \
		-v rss="$rss" -v pss="$pss" -v pc=$((c1 - c0)) -v lc=$((l1 - l0)) -v x="$extra" 'BEGIN {
			wall = w1 - w0; cpus = dt / hz
			print p, c, r, t, reqs, rps, cpus / wall, cpus, p50, p99, n2, se, rss, pc / hz / wall, lc / hz / wall, wall, pss, x
		}' >>"$ROWS"
	log "$(tail -1 "$ROWS" | awk -F'\t' '{printf "%-2s c%-5s r%s %-17s %7.0f req/s  proxy %.2f cores  %6.1fk req/CPU-s  p99 %7.2f ms  non2xx %s  err %s%s",
		$1, $2, $3, $4, $6, $7, ($8 > 0 ? $5 / $8 / 1000 : 0), $10, $11, $12, ($18 == "-" ? "" : ($18 ~ /^hog:/ ? "  busy loop " substr($18, 5) " cores" : "  admin writes ok/sent@rate " $18))}')"
}

# Targets of the profile being run, in round order: name, pids, tool, url,
# extra load-tool arguments (one string, split on "|").
T_NAME=() T_PIDS=() T_TOOL=() T_URL=() T_ARGS=()
target() {
	T_NAME+=("$1") T_PIDS+=("$2") T_TOOL+=("$3") T_URL+=("$4") T_ARGS+=("${5:-}")
}
# warm TOOL URL [ARGS...]: short unmeasured load.
warm() {
	local tool=$1 url=$2
	shift 2
	case $tool in
	wrk) taskset -c "$LOAD_CPU" wrk -t1 -c50 -d"${P_WARM}s" --timeout 5s "$@" "$url" >/dev/null 2>&1 || true ;;
	h2load) taskset -c "$LOAD_CPU" h2load -t1 -c10 -m10 -D"$P_WARM" "$@" "$url" >/dev/null 2>&1 || true ;;
	esac
}
# run_profile PROFILE: warm-up of every target, then interleaved rounds
# (every target once per round, in the order given), per connection count.
run_profile() {
	local profile=$1 c r i args
	plan "$profile"
	for c in $P_CONNS; do
		log "profile $profile, $c connections: ${P_WARM}s warm-up each, $P_ROUNDS rounds x ${P_DUR}s of ${T_NAME[*]}"
		for i in "${!T_NAME[@]}"; do
			IFS='|' read -r -a args <<<"${T_ARGS[$i]}"
			[[ ${T_NAME[$i]} == *+churn || ${T_NAME[$i]} == *hog ]] || warm "${T_TOOL[$i]}" "${T_URL[$i]}" "${args[@]}"
		done
		for r in $(seq "$P_ROUNDS"); do
			for i in "${!T_NAME[@]}"; do
				IFS='|' read -r -a args <<<"${T_ARGS[$i]}"
				measure "$profile" "$c" "$r" "${T_NAME[$i]}" "${T_PIDS[$i]}" "${T_TOOL[$i]}" "$P_DUR" "${T_URL[$i]}" "${args[@]}"
				sleep 0.2
			done
		done
	done
	T_NAME=() T_PIDS=() T_TOOL=() T_URL=() T_ARGS=()
}

SSL_DONE=0
sluice_ssl() { # the certificate as an SSL object on every Sluice instance.
	((SSL_DONE)) && return 0
	local cert key e
	cert=$(awk '{printf "%s\\n", $0}' "$TMP/cert.pem")
	key=$(awk '{printf "%s\\n", $0}' "$TMP/key.pem")
	for e in $ENGINES; do
		admin_ok "$e" PUT ssls/1 -d "{\"cert\":\"$cert\",\"key\":\"$key\",\"snis\":[\"127.0.0.1\",\"bench.local\",\"localhost\"]}"
		wait_http "https://bench.local:${SL_TLS[$e]}/hello" -k --resolve "bench.local:${SL_TLS[$e]}:127.0.0.1" ||
			die "sluice-$e TLS not serving: $(tail -5 "$TMP/sluice-$e/sluice.log")"
	done
	SSL_DONE=1
}

T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for profile in $PROFILES; do
	case $profile in
	a)
		target nginx "$NGX_TREE" wrk "http://127.0.0.1:$NGX_PORT/hello"
		for e in $ENGINES; do target "sluice-$e" "${SL_TREE[$e]}" wrk "http://127.0.0.1:${SL_HTTP[$e]}/hello"; done
		for p in $ACTIVE_PEERS; do target "$p" "${PEER_TREE[$p]}" wrk "http://127.0.0.1:${PEER_HTTP[$p]}/hello"; done
		run_profile a
		;;
	x)
		# Profile a at 50 connections, re-run disturbed on purpose: each round
		# runs nginx and every Sluice engine undisturbed, then again with a
		# busy loop pinned to the proxy core (it takes about half of it from
		# whichever proxy runs), then with one pinned to the load core (wrk
		# and the origin get about half of theirs). If requests per proxy
		# CPU-second is the robust figure the method assumes, the ratio to
		# nginx should move far less than req/s does.
		for v in "" +cpuhog +loadhog; do
			target "nginx$v" "$NGX_TREE" wrk "http://127.0.0.1:$NGX_PORT/hello"
			for e in $ENGINES; do target "sluice-$e$v" "${SL_TREE[$e]}" wrk "http://127.0.0.1:${SL_HTTP[$e]}/hello"; done
		done
		run_profile x
		echo "- Profile x: the competing load is \`taskset -c CPU sh -c 'while :; do :; done'\`, started 0.3 s before and stopped (TERM, then reaped) right after each +cpuhog (CPU $PROXY_CPU) or +loadhog (CPU $LOAD_CPU) wrk run; the every-round table's last column gives the cores it got." >>"$NOTES"
		;;
	e)
		# The SNI list has the IP because wrk (OpenSSL) sends the URL's host as
		# SNI even when it is an IP literal; curl does not, so the check uses
		# bench.local.
		sluice_ssl
		check nginx "https://bench.local:$NGX_TLS/hello" -k --resolve "bench.local:$NGX_TLS:127.0.0.1"
		tls="nginx \`$(echo | openssl s_client -connect 127.0.0.1:$NGX_TLS -servername 127.0.0.1 2>/dev/null | awk '/^New,/ {print $2, $5}' || true)\`"
		target nginx "$NGX_TREE" wrk "https://127.0.0.1:$NGX_TLS/hello"
		for e in $ENGINES; do
			check "sluice-$e" "https://bench.local:${SL_TLS[$e]}/hello" -k --resolve "bench.local:${SL_TLS[$e]}:127.0.0.1"
			tls="$tls, sluice-$e \`$(echo | openssl s_client -connect 127.0.0.1:${SL_TLS[$e]} -servername 127.0.0.1 2>/dev/null | awk '/^New,/ {print $2, $5}' || true)\`"
			target "sluice-$e" "${SL_TREE[$e]}" wrk "https://127.0.0.1:${SL_TLS[$e]}/hello"
		done
		for p in $ACTIVE_PEERS; do
			check "$p" "https://bench.local:${PEER_TLS[$p]}/hello" -k --resolve "bench.local:${PEER_TLS[$p]}:127.0.0.1"
			tls="$tls, $p \`$(echo | openssl s_client -connect 127.0.0.1:${PEER_TLS[$p]} -servername 127.0.0.1 2>/dev/null | awk '/^New,/ {print $2, $5}' || true)\`"
			target "$p" "${PEER_TREE[$p]}" wrk "https://127.0.0.1:${PEER_TLS[$p]}/hello"
		done
		echo "- Profile e negotiated (openssl s_client): $tls; ECDSA P-256 self-signed certificate; wrk keeps connections alive, so this is mostly record encryption, not handshakes." >>"$NOTES"
		run_profile e
		;;
	b)
		# APISIX's own benchmark route (benchmark/run.sh in APISIX):
		# limit-count with a count nothing reaches, and prometheus. nginx's
		# counterpart is plain proxying. Each round also measures Sluice's (a)
		# route on the same process, for the "(b) vs own (a)" budget.
		target nginx "$NGX_TREE" wrk "http://127.0.0.1:$NGX_PORT/hello"
		for e in $ENGINES; do
			admin_ok "$e" PUT routes/bench-b -d '{"uri":"/b","upstream_id":"1","plugins":{"limit-count":{"count":999999999,"time_window":60,"rejected_code":503,"key":"remote_addr"},"prometheus":{}}}'
			wait_http "http://127.0.0.1:${SL_HTTP[$e]}/b" || die "sluice-$e: route /b not serving"
			CHECK_HDR="x-ratelimit-limit: 999999999" check "sluice-$e" "http://127.0.0.1:${SL_HTTP[$e]}/b"
			target "sluice-$e@a" "${SL_TREE[$e]}" wrk "http://127.0.0.1:${SL_HTTP[$e]}/hello"
			target "sluice-$e" "${SL_TREE[$e]}" wrk "http://127.0.0.1:${SL_HTTP[$e]}/b"
		done
		run_profile b
		for e in $ENGINES; do
			curl -s "http://127.0.0.1:${SL_PROM[$e]}/apisix/prometheus/metrics" >"$TMP/metrics-$e.txt" || true
			n=$(awk '/^apisix_http_status\{/ && /route="bench-b"/ {s += $NF} END {printf "%d", s}' "$TMP/metrics-$e.txt")
			((n > 0)) || die "sluice-$e: prometheus counted no request of route bench-b"
			echo "- Profile b, sluice-$e: the Prometheus exporter (127.0.0.1:${SL_PROM[$e]}) counted $n requests of the route in apisix_http_status; no 503 from limit-count expected (count 999999999 per 60 s)." >>"$NOTES"
		done
		;;
	c)
		# The seed's gateway route: key-auth (a consumer with a key, requests
		# carry apikey), limit-count per consumer, proxy-rewrite regex_uri.
		target nginx "$NGX_TREE" wrk "http://127.0.0.1:$NGX_PORT/api/v1/orders/42" "-H|apikey: $API_KEY"
		st=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NGX_PORT/api/v1/orders/42")
		[[ $st == 401 ]] || die "nginx: /api/v1/orders/42 without apikey: $st, want 401"
		CHECK_HDR="x-bench-rewritten: 1" check nginx "http://127.0.0.1:$NGX_PORT/api/v1/orders/42" -H "apikey: $API_KEY"
		for e in $ENGINES; do
			admin_ok "$e" PUT consumers -d "{\"username\":\"bench\",\"plugins\":{\"key-auth\":{\"key\":\"$API_KEY\"}}}"
			admin_ok "$e" PUT routes/bench-c -d '{"uri":"/api/v1/orders/*","upstream_id":"1","plugins":{"key-auth":{},"limit-count":{"count":999999999,"time_window":60,"rejected_code":503,"key_type":"var","key":"consumer_name"},"proxy-rewrite":{"regex_uri":["^/api/v1/orders/(.*)","/orders/$1"]}}}'
			wait_http "http://127.0.0.1:${SL_HTTP[$e]}/api/v1/orders/42" -H "apikey: $API_KEY" || die "sluice-$e: route bench-c not serving"
			st=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${SL_HTTP[$e]}/api/v1/orders/42")
			[[ $st == 401 ]] || die "sluice-$e: /api/v1/orders/42 without apikey: $st, want 401"
			CHECK_HDR="x-bench-rewritten: 1" check "sluice-$e" "http://127.0.0.1:${SL_HTTP[$e]}/api/v1/orders/42" -H "apikey: $API_KEY"
			target "sluice-$e@a" "${SL_TREE[$e]}" wrk "http://127.0.0.1:${SL_HTTP[$e]}/hello" "-H|apikey: $API_KEY"
			target "sluice-$e" "${SL_TREE[$e]}" wrk "http://127.0.0.1:${SL_HTTP[$e]}/api/v1/orders/42" "-H|apikey: $API_KEY"
		done
		run_profile c
		;;
	f)
		# HTTP/2 over TLS (ALPN h2), h2load with CLIENTS connections of STREAMS
		# concurrent streams each. h2load sends no SNI for an IP literal, so
		# the URL names localhost (in the certificate and the SNI list).
		sluice_ssl
		h2v() { # h2v URL: the protocol curl negotiates (2 expected).
			curl -sk --http2 -o /dev/null -w '%{http_version}' "$1"
		}
		[[ $(h2v "https://localhost:$NGX_TLS/hello") == 2 ]] || die "nginx: no HTTP/2 on :$NGX_TLS"
		target nginx "$NGX_TREE" h2load "https://localhost:$NGX_TLS/hello"
		for e in $ENGINES; do
			[[ $(h2v "https://localhost:${SL_TLS[$e]}/hello") == 2 ]] || die "sluice-$e: no HTTP/2 on :${SL_TLS[$e]}"
			target "sluice-$e" "${SL_TREE[$e]}" h2load "https://localhost:${SL_TLS[$e]}/hello"
		done
		run_profile f
		echo "- Profile f: h2load -t1 -c$(plan f && echo "${P_CONNS%x*} -m${P_CONNS#*x}") over TLS 1.3 with ALPN h2; with engine fast, Sluice hands h2 clients to the net/http engine (docs/engine.md), so both Sluice rows measure the same HTTP/2 server." >>"$NOTES"
		;;
	g)
		# (a) with and without CHURN_RATE Admin API writes per second, in
		# alternating rounds on the same process.
		for e in $ENGINES; do
			target "sluice-$e" "${SL_TREE[$e]}" wrk "http://127.0.0.1:${SL_HTTP[$e]}/hello"
			target "sluice-$e+churn" "${SL_TREE[$e]}" wrk "http://127.0.0.1:${SL_HTTP[$e]}/hello"
		done
		run_profile g
		echo "- Profile g: $CHURN_WRITERS curl writers at once, each \`--rate ${CHURN_OFFER}/m\` ($(awk -v o="$CHURN_OFFER" -v w="$CHURN_WRITERS" 'BEGIN { printf "%.1f", o * w / 60 }')/s offered together, 3 % over the ${CHURN_RATE}/s to reach, since curl loses each transfer's set-up time), sequential transfers, on CPU $LOAD_CPU, writer N sending PUT /apisix/admin/routes/churn-N (uri /churn-N, a new desc each time) from 0.2 s before to the end of the wrk run; their CPU use lands on the load core, the Admin API's on the proxy's and is counted in Sluice's CPU-seconds. The every-round table's last column is admin writes answered 200/201 / sent @ writes per second achieved during the wrk run (all writers together, counted from their output at the start and end of the run)." >>"$NOTES"
		;;
	d)
		# The catch-all route goes first so that a request the router gets
		# wrong shows up as a 404 (non-2xx) instead of being served by it; the
		# routes of b, c and g go too, so each instance holds exactly ROUTES.
		target nginx "$NGXM_TREE" wrk "http://127.0.0.1:$NGX_MANY/r/$ROUTES"
		for e in $ENGINES; do
			for id in catchall bench-b bench-c $(seq -f 'churn-%g' "$CHURN_WRITERS"); do
				st=$(admin "$e" DELETE "routes/$id")
				[[ $st == 200 || $st == 404 ]] || die "sluice-$e: DELETE routes/$id: $st $(cat "$TMP/admin.out")"
			done
		done
		declare -A RSS_BEFORE CPID
		r0=$(now)
		for e in $ENGINES; do
			RSS_BEFORE[$e]=$(rss_kb ${SL_TREE[$e]})
			awk -v n="$ROUTES" -v a="http://127.0.0.1:${SL_ADMIN[$e]}/apisix/admin/routes" -v k="$ADMIN_KEY" 'BEGIN {
				for (i = 1; i <= n; i++) {
					if (i > 1) print "next"
					printf "url = \"%s/%d\"\nrequest = \"PUT\"\nheader = \"X-API-KEY: %s\"\n", a, i, k
					printf "data = \"{\\\"uri\\\":\\\"/r/%d\\\",\\\"upstream_id\\\":\\\"1\\\"}\"\n", i
					print "output = \"/dev/null\""
					print "write-out = \"%{http_code}\\n\""
				}
			}' >"$TMP/routes-$e.curl"
			log "profile d: creating $ROUTES routes on sluice-$e through the Admin API (curl --parallel, 16 at a time)"
			curl -s --no-progress-meter --parallel --parallel-max 16 -K "$TMP/routes-$e.curl" \
				>"$TMP/routes-$e.status" 2>"$TMP/routes-$e.err" &
			CPID[$e]=$!
			PIDS+=(${CPID[$e]})
		done
		for e in $ENGINES; do
			wait "${CPID[$e]}" || true
			forget "${CPID[$e]}"
			r1=$(now)
			wait_http "http://127.0.0.1:${SL_HTTP[$e]}/r/$ROUTES" || die "sluice-$e: route /r/$ROUTES not serving"
			r2=$(now)
			bad=$(grep -cv '^20[01]$' "$TMP/routes-$e.status" || true)
			okn=$(grep -c '^20[01]$' "$TMP/routes-$e.status" || true)
			((okn == ROUTES)) || die "sluice-$e: only $okn of $ROUTES route PUTs succeeded ($bad failed): $(head -3 "$TMP/routes-$e.err")"
			check "sluice-$e" "http://127.0.0.1:${SL_HTTP[$e]}/r/$ROUTES"
			[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${SL_HTTP[$e]}/hello") == 404 ]] ||
				die "sluice-$e: /hello should be 404 with only /r/N routes"
			rss_after=$(rss_kb ${SL_TREE[$e]})
			awk -v e="$e" -v n="$ROUTES" -v a="$r0" -v b="$r1" -v c="$r2" -v x="${RSS_BEFORE[$e]}" -v y="$rss_after" -v m="$(echo $ENGINES | wc -w)" 'BEGIN {
				printf "- Profile d, sluice-%s: %d route PUTs (16 parallel curl transfers%s) done %.1f s after the start, %.0f writes/s; the last route served %.2f s later. RSS %.1f MiB before, %.1f MiB after the routes (idle).\n", e, n, (m > 1 ? ", both engines at once" : ""), b - a, n / (b - a), c - b, x / 1024, y / 1024
			}' >>"$NOTES"
			target "sluice-$e" "${SL_TREE[$e]}" wrk "http://127.0.0.1:${SL_HTTP[$e]}/r/$ROUTES"
		done
		check nginx "http://127.0.0.1:$NGX_MANY/r/$ROUTES"
		run_profile d
		;;
	esac
done
T_END=$(date +%s)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
ver() { "$@" 2>&1 | head -1; }
mkdir -p "$RESULTS"
REPORT="$RESULTS/$STAMP.md"
{
	echo "# Sluice vs nginx$(for p in $ACTIVE_PEERS; do printf ', %s' "$p"; done), $STAMP"
	echo
	echo "| item | value |"
	echo "|---|---|"
	echo "| host | $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r) |"
	echo "| sluice | $SLUICE_REV, $(go version | awk '{print $3}'), engines: $ENGINES (one process each), GOMAXPROCS from the affinity mask (1) |"
	echo "| nginx | $(nginx -v 2>&1 | sed 's/^nginx version: //'), 1 worker, proxy and origin |"
	[[ " $ACTIVE_PEERS " == *" haproxy "* ]] && echo "| haproxy | $(ver haproxy -v | awk '{print $3}'), nbthread 1 |"
	[[ " $ACTIVE_PEERS " == *" caddy "* ]] && echo "| caddy | $(ver caddy version | awk '{print $1}'), GOMAXPROCS 1 (affinity) |"
	echo "| wrk | $(wrk -v 2>&1 | head -1 | awk '{print $2}'), -t1, --timeout 5s |"
	has f && echo "| h2load | $(ver h2load --version | awk '{print $NF}'), -t1 |"
	echo "| mode | $MODE; profiles $PROFILES$(for p in $PROFILES; do plan "$p"; printf '; %s: %s rounds x %ss at %s conns, %ss warm-up' "$p" "$P_ROUNDS" "$P_DUR" "$P_CONNS" "$P_WARM"; done) |"
	echo "| pinning | proxy under test on CPU $PROXY_CPU; origin (nginx, 1 KiB), wrk/h2load and the churn writer on CPU $LOAD_CPU |"
	WALL=$(($(date +%s) - WALL_T0))
	echo "| wall time | **$((WALL / 60)) min $((WALL % 60)) s** from start to report (tool checks, build, set-up, every profile incl. d's route PUTs); $((T_END - T_START)) s of it in the profiles |"
	echo "| load average | $LOAD_START at start, $LOAD_END at end |"
	echo
	echo "Key figure: a proxy's requests per proxy CPU-second divided by its baseline's, per round"
	echo "(each target against the baseline measured in the same round: nginx; Sluice's own (a) route"
	echo "for b and c; the undisturbed round for g), median and range over rounds."
	echo "When the load core (load tool + origin) is near 1.00 busy, the proxy's req/s is capped by the"
	echo "load side, not by the proxy; requests per proxy CPU-second stays comparable."
	echo
} >"$REPORT"

awk -F'\t' -v PROFILES="$PROFILES" -v ENGINES="$ENGINES" -v CRATE="$CHURN_RATE" -v CW="$CHURN_WRITERS" -v ROUTES="$ROUTES" -v MINC="$MIN_CORES" -v MINS="$MIN_CPU_S" -v PCPU="$PROXY_CPU" -v LCPU="$LOAD_CPU" '
function med(s,   a, n, i, j, t) {
	n = split(s, a, " ")
	if (n == 0) return 0
	for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function lo(s,   a, n, i, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 < m) m = a[i] + 0; return m }
function hi(s,   a, n, i, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 > m) m = a[i] + 0; return m }
function cnt(s,   a) { return (s == "") ? 0 : split(s, a, " ") }
function add(k, v) { L[k] = (k in L) ? L[k] " " v : v }
function addu(k, v) { if (!((k SUBSEP v) in U)) { U[k SUBSEP v] = 1; L[k] = (k in L) ? L[k] " " v : v } }
# base(p, t): the target t is compared with in profile p ("" for none).
function base(p, t,   e) {
	if (p == "g") { if (t ~ /\+churn$/) { e = t; sub(/\+churn$/, "", e); return e } return "" }
	if (t ~ /^nginx/) return ""
	# x: each disturbed Sluice run against nginx under the same disturbance.
	if (match(t, /\+[a-z]*hog$/)) return "nginx" substr(t, RSTART)
	return "nginx"
}
# pair(p, c, t, b): per-round ratios of t against b; sets PR[...]; returns
# the number of usable pairs.
function pair(p, c, t, b,   nr, R, x, s, n, k) {
	k = p SUBSEP c SUBSEP t SUBSEP b
	if (k in DONE) return DONE[k]
	nr = split(rounds[p SUBSEP c], R, " ")
	for (x = 1; x <= nr; x++) {
		s = p SUBSEP c SUBSEP R[x] SUBSEP t; n = p SUBSEP c SUBSEP R[x] SUBSEP b
		if (!(s in KP) || !(n in KP) || KP[n] <= 0 || RP[n] <= 0 || !US[s] || !US[n]) continue
		add(k SUBSEP "ratio" SUBSEP 0, KP[s] / KP[n]); add(k SUBSEP "rratio" SUBSEP 0, RP[s] / RP[n])
		if (P99[n] > 0) add(k SUBSEP "p99" SUBSEP 0, P99[s] / P99[n])
		if (OK[s] && OK[n]) {
			add(k SUBSEP "ratio" SUBSEP 1, KP[s] / KP[n]); add(k SUBSEP "rratio" SUBSEP 1, RP[s] / RP[n])
			if (P99[n] > 0) add(k SUBSEP "p99" SUBSEP 1, P99[s] / P99[n])
		}
	}
	DONE[k] = cnt(L[k SUBSEP "ratio" SUBSEP 0])
	return DONE[k]
}
# The figure for a pair: median over unstarved pairs, else over all usable
# pairs (marked). Sets RV (value), RB (basis), RR (range), RP99, RRPS.
function fig(p, c, t, b,   k, all, cl, v, use) {
	RV = ""; RB = ""; RR = ""; RP99 = ""; RRPS = ""
	if (!pair(p, c, t, b)) return 0
	k = p SUBSEP c SUBSEP t SUBSEP b
	all = L[k SUBSEP "ratio" SUBSEP 0]; cl = L[k SUBSEP "ratio" SUBSEP 1]
	v = (cl == "") ? 0 : 1; use = v ? cl : all
	RV = med(use); RR = sprintf("%.2f–%.2f", lo(use), hi(use))
	RB = v ? sprintf("%d of %d pairs", cnt(cl), cnt(all)) : sprintf("%d pair%s, all starved", cnt(all), cnt(all) == 1 ? "" : "s")
	RALL = sprintf("%.2f (%.2f–%.2f)", med(all), lo(all), hi(all))
	RRPS = med(L[k SUBSEP "rratio" SUBSEP v])
	RP99 = (L[k SUBSEP "p99" SUBSEP v] == "") ? "" : med(L[k SUBSEP "p99" SUBSEP v])
	return 1
}
# kp(p, c, t): median k req per CPU-s of t (unstarved rounds, else all usable).
function kp(p, c, t,   k) {
	k = p SUBSEP c SUBSEP t SUBSEP 1 SUBSEP "kpcs"
	if (L[k] == "") k = p SUBSEP c SUBSEP t SUBSEP 0 SUBSEP "kpcs"
	return (L[k] == "") ? "" : med(L[k])
}
function verdict(v, goal, le) {
	if (v == "") return "n/a"
	return (le ? (v + 0 <= goal) : (v + 0 >= goal)) ? "**met**" : "**missed**"
}
BEGIN {
	name["a"] = "(a) plain proxy"
	name["e"] = "(e) TLS termination"
	name["b"] = "(b) limit-count + prometheus"
	name["c"] = "(c) key-auth + limit-count + proxy-rewrite"
	name["d"] = "(d) " ROUTES " routes, last one"
	name["f"] = "(f) HTTP/2 over TLS, h2load"
	name["g"] = "(g) (a) + " CRATE " Admin API writes/s"
	name["x"] = "(x) (a) re-run disturbed"
}
{
	p = $1; c = $2; r = $3; t = $4
	kpcs = ($8 > 0) ? $5 / $8 / 1000 : 0
	# A round in which the proxy got less than MINC cores was starved by
	# other work on the machine; it is left out of the medians (the raw table
	# keeps it, marked).
	ok = ($7 >= MINC)
	usable = ($8 >= MINS)
	addu(p SUBSEP "conns", c); addu(p SUBSEP c SUBSEP "targets", t)
	for (v = (usable ? 0 : 2); v <= ok; v++) {
		k = p SUBSEP c SUBSEP t SUBSEP v
		add(k SUBSEP "rps", $6); add(k SUBSEP "cores", $7); add(k SUBSEP "kpcs", kpcs)
		add(k SUBSEP "p50", $9); add(k SUBSEP "p99", $10); add(k SUBSEP "load", $15)
		f = $14 - $7; if (f < 0) f = 0; add(k SUBSEP "foreign", f)
		if ($13 > RSS[k]) RSS[k] = $13; if ($17 > PSS[k]) PSS[k] = $17
	}
	# Errors count in every round, used or not.
	k = p SUBSEP c SUBSEP t
	N2[k] += $11; SE[k] += $12; if ($13 > RSSALL[k]) RSSALL[k] = $13
	if ($18 != "-" && $18 !~ /^hog:/) { split($18, w, /[\/@]/); WOK[k] += w[1]; WN[k] += w[2]; add(k SUBSEP "wrate", w[3]) }
	k = p SUBSEP c SUBSEP r SUBSEP t
	KP[k] = kpcs; RP[k] = $6; OK[k] = ok; US[k] = usable; P99[k] = $10; CO[k] = $7
	if ($18 ~ /^hog:/) HOG[k] = substr($18, 5) + 0
	addu(p SUBSEP c SUBSEP "rounds", r); rounds[p SUBSEP c] = L[p SUBSEP c SUBSEP "rounds"]
	raw[NR] = sprintf("| %s | %s | %s | %s | %.0f | %.2f%s | %.1f | %.2f | %.2f | %d | %d | %.1f | %.1f | %.2f | %.2f | %s |", p, c, r, t, $6, $7, ok ? "" : (usable ? " (starved)" : " (unusable)"), kpcs, $9, $10, $11, $12, $13 / 1024, $17 / 1024, $14, $15, $18)
}
END {
	np = split(PROFILES, P, " "); ne = split(ENGINES, E, " ")
	print "## Summary: requests per proxy CPU-second against the baseline of the same round"
	print ""
	printf "Median over pairs in which both got at least %.2f cores; when every pair of a row\n", MINC
	print "was starved by other work on the machine, the median over all its pairs, marked \"all starved\"."
	printf "Rounds in which a proxy used less than %s CPU-seconds are left out everywhere (too few clock ticks).\n", MINS
	print "\"p99 ratio\" is the median of per-round p99 ratios (for g: the p99 change under churn)."
	print ""
	print "| profile | conns | proxy | vs | **per CPU-s ratio** | range | basis | all pairs: median (range) | req/s ratio | p99 ratio | baseline k req/CPU-s | proxy k req/CPU-s | failed requests of proxy |"
	print "|---|---:|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= np; i++) {
		nc = split(L[P[i] SUBSEP "conns"], C, " ")
		for (j = 1; j <= nc; j++) {
			nt = split(L[P[i] SUBSEP C[j] SUBSEP "targets"], T, " ")
			for (x = 1; x <= nt; x++) {
				# b and c: the plugin route against nginx and against Sluice own (a) route.
				for (y = 0; y <= 1; y++) {
					t = T[x]
					if (y == 0) b = base(P[i], t)
					else if ((P[i] == "b" || P[i] == "c") && t ~ /^sluice-/ && t !~ /@a$/) b = t "@a"
					else continue
					if (b == "") continue
					ke = P[i] SUBSEP C[j] SUBSEP t
					if (!fig(P[i], C[j], t, b)) { printf "| %s | %s | %s | %s | n/a | | no usable pair | | | | | | %d |\n", name[P[i]], C[j], t, b, N2[ke] + SE[ke]; continue }
					printf "| %s | %s | %s | %s | **%.2f** | %s | %s | %s | %.2f | %s | %.1f | %.1f | %d |\n", name[P[i]], C[j], t, b, RV, RR, RB, RALL, RRPS, (RP99 == "" ? "" : sprintf("%.2f", RP99)), kp(P[i], C[j], b), kp(P[i], C[j], t), N2[ke] + SE[ke]
				}
			}
		}
	}

	print ""
	print "## Budgets (issue 6, item 4)"
	print ""
	print "Per proxy CPU-second, same run, pinned. Goals to engineer toward, reported as measured."
	print "(d) vs (a) compares Sluice with itself across profiles of the same run (medians at 50"
	print "connections; not the same rounds, so noisier than the in-round ratios)."
	print ""
	print "| budget | goal | " (ne > 1 ? "sluice-" E[1] " | sluice-" E[2] " |" : "sluice-" E[1] " |")
	print "|---|---:|" (ne > 1 ? "---|---|" : "---|")
	nb = 0
	B[++nb] = "a50";  B[++nb] = "a200"; B[++nb] = "b"; B[++nb] = "c"; B[++nb] = "d"; B[++nb] = "e"
	B[++nb] = "f"; B[++nb] = "g"; B[++nb] = "p99"; B[++nb] = "rss"
	for (i = 1; i <= nb; i++) {
		line = ""
		for (z = 1; z <= ne; z++) {
			s = "sluice-" E[z]; cell = "not run"
			if (B[i] == "a50" || B[i] == "a200") {
				c = (B[i] == "a50") ? 50 : 200; desc = "(a) plain proxy vs nginx, " c " conns"; goal = (c == 50) ? 1.0 : 0.9; gs = "≥ " sprintf("%.1f", goal) "×"
				if (fig("a", c, s, "nginx")) cell = sprintf("%.2f× %s", RV, verdict(RV, goal, 0))
			} else if (B[i] == "b" || B[i] == "c") {
				desc = "(" B[i] ") vs Sluice own (a), same rounds"; gs = "≥ 0.9×"
				if (fig(B[i], 50, s, s "@a")) { v = RV; cell = sprintf("%.2f× %s", v, verdict(v, 0.9, 0)); if (fig(B[i], 50, s, "nginx")) cell = cell sprintf(" (%.2f× nginx)", RV) }
			} else if (B[i] == "d") {
				desc = "(d) " ROUTES " routes vs Sluice own (a), 50 conns"; gs = "≥ 0.95×"
				kd = kp("d", 50, s); ka = kp("a", 50, s)
				if (kd != "" && ka != "" && ka > 0) { v = kd / ka; cell = sprintf("%.2f× %s (%.1fk / %.1fk)", v, verdict(v, 0.95, 0), kd, ka) }
			} else if (B[i] == "e") {
				desc = "(e) TLS vs nginx, 50 conns"; gs = "≥ 0.8×"
				if (fig("e", 50, s, "nginx")) cell = sprintf("%.2f× %s", RV, verdict(RV, 0.8, 0))
			} else if (B[i] == "f") {
				desc = "(f) HTTP/2 vs nginx"; gs = "≥ 0.7×"
				split(L["f" SUBSEP "conns"], FC, " ")
				if (FC[1] != "" && fig("f", FC[1], s, "nginx")) cell = sprintf("%.2f× %s", RV, verdict(RV, 0.7, 0))
			} else if (B[i] == "g") {
				desc = "(g) failed requests during churn"; gs = "0"
				k = "g" SUBSEP 50 SUBSEP s "+churn"
				if (k in N2) {
					v = N2[k] + SE[k]; cell = sprintf("%d %s", v, (v == 0) ? "**met**" : "**missed**")
					cell = cell sprintf("; admin writes %d/%d ok, %.0f/s achieved (median of rounds, range %.0f–%.0f; %d writers)", WOK[k], WN[k], med(L[k SUBSEP "wrate"]), lo(L[k SUBSEP "wrate"]), hi(L[k SUBSEP "wrate"]), CW)
					if (fig("g", 50, s "+churn", s) && RP99 != "") cell = cell sprintf("; p99 %.2f×, CPU-s %.2f×", RP99, RV)
				}
			} else if (B[i] == "p99") {
				desc = "p99 at 50 conns vs nginx, profile (a)"; gs = "≤ 1.5×"
				if (fig("a", 50, s, "nginx") && RP99 != "") cell = sprintf("%.2f× %s", RP99, verdict(RP99, 1.5, 1))
			} else if (B[i] == "rss") {
				desc = "RSS under load, " ROUTES " routes (max over d rounds)"; gs = "≤ 64 MiB"
				k = "d" SUBSEP 50 SUBSEP s
				if (k in RSSALL) { v = RSSALL[k] / 1024; cell = sprintf("%.1f MiB %s", v, verdict(v, 64, 1)) }
			}
			# A profile that ran without a usable pair, and failed requests,
			# are said, not hidden.
			bp = substr(B[i], 1, 1); if (B[i] == "p99") bp = "a"; if (B[i] == "rss") bp = "d"
			bc = (bp == "f") ? FC[1] : ((B[i] == "a200") ? 200 : 50)
			if (bp == "f") { split(L["f" SUBSEP "conns"], FC, " "); bc = FC[1] }
			bt = (bp == "g") ? s "+churn" : s
			if (cell == "not run" && ((bp SUBSEP bc SUBSEP bt) in N2)) cell = "no usable pair"
			if (bp != "g" && N2[bp SUBSEP bc SUBSEP bt] + SE[bp SUBSEP bc SUBSEP bt] > 0) cell = cell sprintf(" (%d failed requests)", N2[bp SUBSEP bc SUBSEP bt] + SE[bp SUBSEP bc SUBSEP bt])
			line = line " " cell " |"
		}
		printf "| %s | %s |%s\n", desc, gs, line
	}

	# x: how the in-round ratio moves when the same pair is disturbed.
	if (L["x" SUBSEP "conns"] != "") {
		print ""
		print "## Disturbed sample (profile x): does the ratio hold under foreign load?"
		print ""
		print "Profile (a) at 50 connections, nginx then each Sluice engine: undisturbed, with a busy loop"
		print "pinned to the proxy core (CPU " PCPU ", +cpuhog) and with one pinned to the load core (CPU " LCPU ", +loadhog)."
		print "Medians over rounds (starved or not: starving is the point; rounds under " MINS " proxy CPU-s are"
		print "left out). \"moved\" is the disturbed figure divided by the undisturbed one of the same row:"
		print "1.00 means the disturbance did not change it. Reference: the 50-connection ratio of profile (a)"
		print "in this run is in the summary above."
		print ""
		print "| engine | condition | rounds | nginx req/s | nginx cores | nginx k req/CPU-s | sluice req/s | sluice cores | sluice k req/CPU-s | **per CPU-s ratio** | **ratio moved** | req/s ratio | req/s ratio moved | sluice k req/CPU-s moved | busy loop cores (nginx / sluice run) |"
		print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
		split(L["x" SUBSEP "conns"], XC, " "); xc = XC[1]
		nr = split(rounds["x" SUBSEP xc], R, " ")
		for (z = 1; z <= ne; z++) {
			s = "sluice-" E[z]
			for (vv = 1; vv <= 3; vv++) {
				v = (vv == 1) ? "" : ((vv == 2) ? "+cpuhog" : "+loadhog")
				delete XL
				for (x = 1; x <= nr; x++) {
					ks = "x" SUBSEP xc SUBSEP R[x] SUBSEP s v; kn = "x" SUBSEP xc SUBSEP R[x] SUBSEP "nginx" v
					if (!(ks in KP) || !(kn in KP) || !US[ks] || !US[kn] || KP[kn] <= 0 || RP[kn] <= 0) continue
					XL["n"]++
					XL["nrps"] = XL["nrps"] " " RP[kn]; XL["ncores"] = XL["ncores"] " " CO[kn]; XL["nk"] = XL["nk"] " " KP[kn]
					XL["srps"] = XL["srps"] " " RP[ks]; XL["scores"] = XL["scores"] " " CO[ks]; XL["sk"] = XL["sk"] " " KP[ks]
					XL["ratio"] = XL["ratio"] " " KP[ks] / KP[kn]; XL["rratio"] = XL["rratio"] " " RP[ks] / RP[kn]
					if (v != "") XL["hog"] = XL["hog"] "; " sprintf("%.2f / %.2f", HOG[kn], HOG[ks])
				}
				cond = (v == "") ? "undisturbed" : ((v == "+cpuhog") ? "busy loop on proxy core" : "busy loop on load core")
				if (!XL["n"]) { printf "| %s | %s | none usable | | | | | | | n/a | | | | | |\n", s, cond; continue }
				xr = med(XL["ratio"]); xq = med(XL["rratio"]); xk = med(XL["sk"])
				if (v == "") { U0 = xr; Q0 = xq; K0 = xk }
				mv = (v == "" || U0 == "") ? "" : sprintf("%.2f", xr / U0)
				mq = (v == "" || Q0 == "") ? "" : sprintf("%.2f", xq / Q0)
				mk = (v == "" || K0 == "") ? "" : sprintf("%.2f", xk / K0)
				if (v == "") { mv = "1.00"; mq = "1.00"; mk = "1.00" }
				printf "| %s | %s | %d | %.0f | %.2f | %.1f | %.0f | %.2f | %.1f | **%.2f** (%.2f–%.2f) | **%s** | %.2f | %s | %s | %s |\n", s, cond, XL["n"], med(XL["nrps"]), med(XL["ncores"]), med(XL["nk"]), med(XL["srps"]), med(XL["scores"]), xk, xr, lo(XL["ratio"]), hi(XL["ratio"]), mv, xq, mq, mk, substr(XL["hog"], 3)
			}
			U0 = ""; Q0 = ""; K0 = ""
		}
	}

	print ""
	print "## Per profile (medians over rounds that were not starved; errors summed over all rounds; memory is the maximum after a round)"
	print ""
	print "\"proxy CPU\" is CPU-seconds the proxy process tree used per wall second (utime+stime from"
	print "/proc/PID/stat); \"load core\" is how busy CPU " LCPU " (load tool + origin) was; \"foreign on proxy core\""
	print "is CPU " PCPU " time not used by the proxy (other work on the machine), in cores. RSS and"
	print "PSS are summed over the proxy process tree (nginx: master + worker, whose shared pages RSS"
	print "counts twice and PSS splits). \"rounds\" counts the rounds behind the medians. Targets named"
	print "sluice-ENGINE@a are the plain (a) route of the same Sluice process, measured inside the b/c rounds."
	for (i = 1; i <= np; i++) {
		print ""
		print "### " name[P[i]]
		print ""
		print "| conns | proxy | rounds | req/s | proxy CPU (cores) | k req / proxy CPU-s | p50 ms | p99 ms | non-2xx | socket errors | RSS MiB | PSS MiB | load core | foreign on proxy core |"
		print "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		nc = split(L[P[i] SUBSEP "conns"], C, " ")
		for (j = 1; j <= nc; j++) {
			nt = split(L[P[i] SUBSEP C[j] SUBSEP "targets"], T, " ")
			for (z = 1; z <= nt; z++) {
				t = T[z]; ke = P[i] SUBSEP C[j] SUBSEP t
				k = ke SUBSEP 1
				nall = cnt(L[ke SUBSEP 0 SUBSEP "rps"])
				used = sprintf("%d of %d", cnt(L[k SUBSEP "rps"]), nall)
				if (L[k SUBSEP "rps"] == "") { k = ke SUBSEP 0; used = "all " nall " starved" }
				if (L[k SUBSEP "rps"] == "") { printf "| %s | %s | none usable | | | | | | %d | %d | | | | |\n", C[j], t, N2[ke], SE[ke]; continue }
				printf "| %s | %s | %s | %.0f | %.2f | %.1f | %.2f | %.2f | %d | %d | %.1f | %.1f | %.2f | %.2f |\n", C[j], t, used, med(L[k SUBSEP "rps"]), med(L[k SUBSEP "cores"]), med(L[k SUBSEP "kpcs"]), med(L[k SUBSEP "p50"]), med(L[k SUBSEP "p99"]), N2[ke], SE[ke], RSS[k] / 1024, PSS[k] / 1024, med(L[k SUBSEP "load"]), med(L[k SUBSEP "foreign"])
			}
		}
	}
	print ""
	print "## Every round"
	print ""
	print "| profile | conns | round | proxy | req/s | proxy CPU (cores) | k req / CPU-s | p50 ms | p99 ms | non-2xx | socket errors | RSS MiB | PSS MiB | CPU " PCPU " busy | CPU " LCPU " busy | admin writes / busy loop |"
	print "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	for (x = 1; x <= NR; x++) print raw[x]
}' "$ROWS" >>"$REPORT"

if [[ -s $NOTES ]]; then
	{
		echo
		echo "## Notes"
		echo
		cat "$NOTES"
	} >>"$REPORT"
fi

if ((KEEP)); then cp "$ROWS" "$RESULTS/$STAMP.tsv"; fi
cat "$REPORT"
log "report: $REPORT (wall time $((WALL / 60)) min $((WALL % 60)) s)"
