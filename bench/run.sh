#!/usr/bin/env bash
# bench/run.sh: Sluice against nginx on loopback, one command.
#
# Both proxies forward to the same fast origin (nginx returning a fixed 1 KiB
# body). The proxy under test is pinned to CPU 0; the origin and wrk share
# CPU 1. Rounds are interleaved (nginx, sluice, nginx, sluice, ...) so that
# noise from other work on the machine hits both proxies alike, and the figure
# that matters is requests per proxy CPU-second, compared within the same run.
# Method and caveats: docs/benchmarks.md.
#
# Usage: bench/run.sh [--quick | --full] [--profiles "a e d"] [--keep]
#   --quick     (default) 2 rounds x 5 s per connection count, 2 s warm-up
#   --full      3 rounds x 10 s per connection count, 3 s warm-up (~8-9 min)
#   --profiles  which profiles to run, in order (default "a e d"):
#                 a  plain proxy, one route, 1 KiB response
#                 e  TLS termination (TLS 1.3, keep-alive), one route
#                 d  10,000 routes created through the Admin API, requests
#                    to the last one created
#   --keep      keep the temporary directory (configs, logs, raw wrk output)
# Environment overrides: ROUNDS, DURATION (seconds), WARMUP (seconds),
#   CONNS (default "50 200"), ROUTES (default 10000), PROXY_CPU (0), LOAD_CPU (1),
#   MIN_CORES (0.5: rounds where the proxy got less CPU are left out of medians),
#   MIN_CPU_S (1: rounds with fewer proxy CPU-seconds are left out of everything).
#
# Installs nginx and wrk with apt-get when they are missing (and says so).
# Writes bench/results/<timestamp>.md and prints it.
set -euo pipefail

MODE=quick
PROFILES_ARG=""
KEEP=0
while [[ $# -gt 0 ]]; do
	case "$1" in
	--quick) MODE=quick ;;
	--full) MODE=full ;;
	--profiles)
		PROFILES_ARG=${2:?--profiles needs a value}
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

if [[ $MODE == full ]]; then
	ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10} WARMUP=${WARMUP:-3}
else
	ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-5} WARMUP=${WARMUP:-2}
fi
CONNS=${CONNS:-"50 200"}
PROFILES=${PROFILES_ARG:-${PROFILES:-"a e d"}}
ROUTES=${ROUTES:-10000}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
# Rounds in which the proxy got fewer cores than this were starved by other
# work on the machine and are left out of the medians.
MIN_CORES=${MIN_CORES:-0.5}
# Rounds in which the proxy used fewer CPU-seconds than this are unusable
# (a handful of clock ticks): left out of every figure, even "all pairs".
MIN_CPU_S=${MIN_CPU_S:-1}

# Ports chosen to stay clear of APISIX/Sluice defaults and of each other.
UP_PORT=18081     # origin (nginx, 1 KiB body)
NGX_PORT=19081    # nginx proxy, plain (profile a)
NGX_MANY=19082    # nginx proxy, 10,000 locations (profile d)
NGX_TLS=19443     # nginx proxy, TLS (profile e)
SL_PORT=19080     # sluice proxy, plain (profiles a and d)
SL_TLS=18443      # sluice proxy, TLS (profile e)
SL_ADMIN=19180    # sluice Admin API
ADMIN_KEY=bench-admin-key

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS="$REPO/bench/results"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# ---------------------------------------------------------------- tools
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
	log "installing with apt-get: ${need[*]}"
	[[ $(id -u) == 0 ]] || die "need root to install ${need[*]} (or install them yourself)"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2; then
		apt-get update >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2
	fi
else
	log "nginx, wrk, curl, openssl, taskset present; installing nothing"
fi
command -v go >/dev/null || die "go not on PATH"
(($(nproc) >= 2)) || die "needs at least 2 CPUs (proxy on CPU $PROXY_CPU, load on CPU $LOAD_CPU)"

for p in $UP_PORT $NGX_PORT $NGX_MANY $NGX_TLS $SL_PORT $SL_TLS $SL_ADMIN; do
	if [[ -n $(ss -Hltn "sport = :$p" 2>/dev/null) ]]; then
		die "port $p is in use; free it or edit the port list at the top of $0"
	fi
done

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
trap 'exit 130' INT TERM

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
# 1 KiB body and marker header; aborts the run otherwise.
check() {
	local name=$1 url=$2
	shift 2
	local out
	out=$(curl -s -D - -o "$TMP/check.body" "$@" "$url") || die "$name: $url unreachable"
	grep -q '^HTTP/[0-9.]* 200' <<<"$out" || die "$name: $url: $(head -1 <<<"$out")"
	grep -qi '^x-bench-origin: 1' <<<"$out" || die "$name: $url: origin marker header missing"
	[[ $(stat -c %s "$TMP/check.body") == 1024 ]] || die "$name: $url: body is not 1024 bytes"
}

admin() { # admin METHOD PATH [curl args...]: Admin API call, prints the status.
	local m=$1 path=$2
	shift 2
	curl -s -o "$TMP/admin.out" -w '%{http_code}' -X "$m" -H "X-API-KEY: $ADMIN_KEY" \
		"http://127.0.0.1:$SL_ADMIN/apisix/admin/$path" "$@"
}

# ---------------------------------------------------------------- build
log "building sluice"
(cd "$REPO" && go build -o "$TMP/bin/sluice" ./cmd/sluice) || die "go build ./cmd/sluice failed"
SLUICE_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" status --porcelain -- cmd internal go.mod 2>/dev/null) ]]; then
	SLUICE_REV="$SLUICE_REV + uncommitted changes in the working tree"
fi

# ---------------------------------------------------------------- TLS material
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 2 -subj /CN=bench.local \
	-addext "subjectAltName=DNS:bench.local,IP:127.0.0.1" 2>/dev/null

# ---------------------------------------------------------------- origin
mkdir -p "$TMP/origin" "$TMP/nginx"
BODY=$(head -c 1024 /dev/zero | tr '\0' 'x')
temp_paths() { # nginx temp paths inside our own dir, not /var/lib/nginx.
	local d=$1
	echo "client_body_temp_path $d/cb; proxy_temp_path $d/pt; fastcgi_temp_path $d/ft; uwsgi_temp_path $d/ut; scgi_temp_path $d/st;"
}
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
  }
}
EOF
taskset -c "$LOAD_CPU" nginx -e "$TMP/origin/error.log" -p "$TMP/origin" -c "$TMP/origin/nginx.conf" \
	>"$TMP/origin/stdout.log" 2>&1 &
PIDS+=($!)

# ---------------------------------------------------------------- nginx proxies
# Two nginx proxies, both pinned like Sluice: "nginx" for profiles a and e,
# "nginx-many" with the 10,000 locations of profile d, so the big
# configuration does not inflate the memory figures of the other profiles.
# Both set the same X-Forwarded-* headers APISIX (and so Sluice) adds, keep
# upstream connections alive (pool of 320, APISIX's default
# keepalive_pool.size), and do not cap client keep-alive requests (Sluice does
# not either). TLS: same certificate, TLS 1.3 with AES-128-GCM first, which is
# what Go's crypto/tls picks on hardware with AES instructions.
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
nginx_proxy_conf "$TMP/nginx" "  server {
    listen 127.0.0.1:$NGX_PORT backlog=4096;
    location / { proxy_pass http://origin; }
  }
  server {
    listen 127.0.0.1:$NGX_TLS ssl backlog=4096;
    ssl_certificate $TMP/cert.pem;
    ssl_certificate_key $TMP/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
    location / { proxy_pass http://origin; }
  }" >"$TMP/nginx/nginx.conf"
# Profile d: one exact-match location per route, like APISIX's exact uri.
nginx_proxy_conf "$TMP/nginx-many" "  server {
    listen 127.0.0.1:$NGX_MANY backlog=4096;
$(awk -v n="$ROUTES" 'BEGIN { for (i = 1; i <= n; i++) printf "    location = /r/%d { proxy_pass http://origin; }\n", i }')
  }" >"$TMP/nginx-many/nginx.conf"
taskset -c "$PROXY_CPU" nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
	>"$TMP/nginx/stdout.log" 2>&1 &
NGX_PID=$!
PIDS+=($NGX_PID)
taskset -c "$PROXY_CPU" nginx -e "$TMP/nginx-many/error.log" -p "$TMP/nginx-many" -c "$TMP/nginx-many/nginx.conf" \
	>"$TMP/nginx-many/stdout.log" 2>&1 &
NGXM_PID=$!
PIDS+=($NGXM_PID)

# ---------------------------------------------------------------- sluice
mkdir -p "$TMP/sluice"
cat >"$TMP/sluice/config.yaml" <<EOF
apisix:
  node_listen:
    - ip: 127.0.0.1
      port: $SL_PORT
  ssl:
    enable: true
    listen:
      - ip: 127.0.0.1
        port: $SL_TLS
deployment:
  admin:
    admin_key:
      - name: admin
        key: $ADMIN_KEY
        role: admin
    admin_listen:
      ip: 127.0.0.1
      port: $SL_ADMIN
EOF
(cd "$TMP/sluice" && exec taskset -c "$PROXY_CPU" "$TMP/bin/sluice" run -c "$TMP/sluice/config.yaml") \
	>"$TMP/sluice/sluice.log" 2>&1 &
SL_PID=$!
PIDS+=($SL_PID)

wait_http "http://127.0.0.1:$UP_PORT/" || die "origin did not start: $(tail -3 "$TMP/origin/error.log")"
wait_http "http://127.0.0.1:$SL_ADMIN/apisix/admin/routes" -H "X-API-KEY: $ADMIN_KEY" ||
	die "sluice Admin API not ready: $(tail -5 "$TMP/sluice/sluice.log")"
wait_http "http://127.0.0.1:$NGX_PORT/" || die "nginx proxy did not start: $(tail -3 "$TMP/nginx/error.log")"
wait_http "http://127.0.0.1:$NGX_MANY/r/1" || die "nginx-many did not start: $(tail -3 "$TMP/nginx-many/error.log")"
check nginx "http://127.0.0.1:$NGX_PORT/hello"

# One upstream object shared by all routes (APISIX defaults: roundrobin,
# keepalive_pool 320 connections).
st=$(admin PUT upstreams/1 -d "{\"type\":\"roundrobin\",\"nodes\":{\"127.0.0.1:$UP_PORT\":1}}")
[[ $st == 20? ]] || die "PUT upstreams/1: $st $(cat "$TMP/admin.out")"
st=$(admin PUT routes/catchall -d '{"uri":"/*","upstream_id":"1"}')
[[ $st == 20? ]] || die "PUT routes/catchall: $st $(cat "$TMP/admin.out")"
wait_http "http://127.0.0.1:$SL_PORT/hello" || die "sluice route not serving: $(tail -5 "$TMP/sluice/sluice.log")"
check sluice "http://127.0.0.1:$SL_PORT/hello"

NGX_TREE=$(tree "$NGX_PID" | tr '\n' ' ')
NGXM_TREE=$(tree "$NGXM_PID" | tr '\n' ' ')
SL_TREE=$(tree "$SL_PID" | tr '\n' ' ')
log "nginx proxy pids: $NGX_TREE, nginx-many: $NGXM_TREE (CPU $(taskset -pc "$NGX_PID" | awk '{print $NF}')); sluice pid: $SL_TREE (CPU $(taskset -pc "$SL_PID" | awk '{print $NF}'))"

# ---------------------------------------------------------------- measuring
ROWS="$TMP/rows.tsv"
: >"$ROWS"
NOTES="$TMP/notes.md"
: >"$NOTES"

to_ms() { # wrk latency ("512.00us", "1.23ms", "1.01s", "2.00m") -> ms
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
		else printf "nan" }'
}

# measure PROFILE CONNS ROUND TARGET PIDS URL: one wrk run, one row in
# $ROWS; PIDS are the processes whose CPU and memory count for TARGET.
measure() {
	local profile=$1 conns=$2 round=$3 target=$4 pids=$5 url=$6
	# shellcheck disable=SC2086
	local out="$TMP/wrk-$profile-c$conns-r$round-$target.txt"
	local t0 t1 c0 c1 l0 l1 w0 w1
	read -r c0 _ < <(cpustat "$PROXY_CPU")
	read -r l0 _ < <(cpustat "$LOAD_CPU")
	# shellcheck disable=SC2086
	t0=$(ticks $pids)
	w0=$(now)
	taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 5s --latency "$url" >"$out" 2>&1 ||
		die "wrk failed: $(tail -3 "$out")"
	w1=$(now)
	# shellcheck disable=SC2086
	t1=$(ticks $pids)
	read -r c1 _ < <(cpustat "$PROXY_CPU")
	read -r l1 _ < <(cpustat "$LOAD_CPU")
	local reqs rps p50 p99 non2xx sockerr rss
	reqs=$(awk '/requests in/ {print $1; exit}' "$out")
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
	p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
	p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
	sockerr=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$out")
	# shellcheck disable=SC2086
	rss=$(rss_kb $pids)
	# shellcheck disable=SC2086
	pss=$(pss_kb $pids)
	# CPU figures are in cores (CPU-seconds per wall second) over the wrk run.
	awk -v OFS='\t' -v p="$profile" -v c="$conns" -v r="$round" -v t="$target" \
		-v reqs="${reqs:-0}" -v rps="${rps:-0}" -v dt=$((t1 - t0)) -v hz="$CLK_TCK" \
		-v w0="$w0" -v w1="$w1" -v p50="$p50" -v p99="$p99" -v n2="${non2xx:-0}" -v se="${sockerr:-0}" \
		-v rss="$rss" -v pss="$pss" -v pc=$((c1 - c0)) -v lc=$((l1 - l0)) 'BEGIN {
			wall = w1 - w0; cpus = dt / hz
			print p, c, r, t, reqs, rps, cpus / wall, cpus, p50, p99, n2, se, rss, pc / hz / wall, lc / hz / wall, wall, pss
		}' >>"$ROWS"
	log "$(tail -1 "$ROWS" | awk -F'\t' '{printf "%-2s c%-3s r%s %-6s %8.0f req/s  proxy %.2f cores  %6.1fk req/CPU-s  p99 %s ms  non2xx %s  err %s",
		$1, $2, $3, $4, $6, $7, ($8 > 0 ? $5 / $8 / 1000 : 0), $10, $11, $12}')"
}

warm() { # warm URL: short unmeasured load.
	taskset -c "$LOAD_CPU" wrk -t1 -c50 -d"${WARMUP}s" --timeout 5s "$1" >/dev/null 2>&1 || true
}

# run_profile PROFILE NGINX_PIDS NGINX_URL SLUICE_URL: warm-up, then
# interleaved rounds.
run_profile() {
	local profile=$1 npids=$2 nurl=$3 surl=$4 c r
	for c in $CONNS; do
		log "profile $profile, $c connections: warm-up ${WARMUP}s each"
		warm "$nurl"
		warm "$surl"
		for r in $(seq "$ROUNDS"); do
			measure "$profile" "$c" "$r" nginx "$npids" "$nurl"
			sleep 1
			measure "$profile" "$c" "$r" sluice "$SL_TREE" "$surl"
			sleep 1
		done
	done
}

T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for profile in $PROFILES; do
	case $profile in
	a)
		run_profile a "$NGX_TREE" "http://127.0.0.1:$NGX_PORT/hello" "http://127.0.0.1:$SL_PORT/hello"
		;;
	e)
		# The SNI list has the IP because wrk (OpenSSL) sends the URL's host as
		# SNI even when it is an IP literal; curl does not, so the check uses
		# bench.local.
		cert=$(awk '{printf "%s\\n", $0}' "$TMP/cert.pem")
		key=$(awk '{printf "%s\\n", $0}' "$TMP/key.pem")
		st=$(admin PUT ssls/1 -d "{\"cert\":\"$cert\",\"key\":\"$key\",\"snis\":[\"127.0.0.1\",\"bench.local\"]}")
		[[ $st == 20? ]] || die "PUT ssls/1: $st $(cat "$TMP/admin.out")"
		wait_http "https://bench.local:$SL_TLS/hello" -k --resolve "bench.local:$SL_TLS:127.0.0.1" ||
			die "sluice TLS not serving: $(tail -5 "$TMP/sluice/sluice.log")"
		check sluice "https://bench.local:$SL_TLS/hello" -k --resolve "bench.local:$SL_TLS:127.0.0.1"
		check nginx "https://bench.local:$NGX_TLS/hello" -k --resolve "bench.local:$NGX_TLS:127.0.0.1"
		tls_n=$(echo | openssl s_client -connect 127.0.0.1:$NGX_TLS -servername 127.0.0.1 2>/dev/null | awk '/^New,/ {print $2, $5}' || true)
		tls_s=$(echo | openssl s_client -connect 127.0.0.1:$SL_TLS -servername 127.0.0.1 2>/dev/null | awk '/^New,/ {print $2, $5}' || true)
		echo "- Profile e negotiated (openssl s_client): nginx \`${tls_n%,}\`, sluice \`${tls_s%,}\`; ECDSA P-256 self-signed certificate; wrk keeps connections alive, so this is mostly record encryption, not handshakes." >>"$NOTES"
		run_profile e "$NGX_TREE" "https://127.0.0.1:$NGX_TLS/hello" "https://127.0.0.1:$SL_TLS/hello"
		;;
	d)
		# The catch-all route goes first so that a request the router gets
		# wrong shows up as a 404 (non-2xx) instead of being served by it.
		st=$(admin DELETE routes/catchall)
		[[ $st == 200 ]] || die "DELETE routes/catchall: $st $(cat "$TMP/admin.out")"
		rss_before=$(rss_kb $SL_TREE)
		cfg="$TMP/routes.curl"
		awk -v n="$ROUTES" -v a="http://127.0.0.1:$SL_ADMIN/apisix/admin/routes" -v k="$ADMIN_KEY" 'BEGIN {
			for (i = 1; i <= n; i++) {
				if (i > 1) print "next"
				printf "url = \"%s/%d\"\nrequest = \"PUT\"\nheader = \"X-API-KEY: %s\"\n", a, i, k
				printf "data = \"{\\\"uri\\\":\\\"/r/%d\\\",\\\"upstream_id\\\":\\\"1\\\"}\"\n", i
				print "output = \"/dev/null\""
				print "write-out = \"%{http_code}\\n\""
			}
		}' >"$cfg"
		log "profile d: creating $ROUTES routes through the Admin API (curl --parallel, 16 at a time)"
		r0=$(now)
		curl -s --no-progress-meter --parallel --parallel-max 16 -K "$cfg" >"$TMP/routes.status" 2>"$TMP/routes.err" || true
		r1=$(now)
		wait_http "http://127.0.0.1:$SL_PORT/r/$ROUTES" || die "route /r/$ROUTES not serving"
		r2=$(now)
		bad=$(grep -cv '^20[01]$' "$TMP/routes.status" || true)
		okn=$(grep -c '^20[01]$' "$TMP/routes.status" || true)
		((okn == ROUTES)) || die "only $okn of $ROUTES route PUTs succeeded ($bad failed): $(head -3 "$TMP/routes.err")"
		check sluice "http://127.0.0.1:$SL_PORT/r/$ROUTES"
		check nginx "http://127.0.0.1:$NGX_MANY/r/$ROUTES"
		[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SL_PORT/hello") == 404 ]] ||
			die "sluice: /hello should be 404 with only /r/N routes"
		rss_after=$(rss_kb $SL_TREE)
		awk -v n="$ROUTES" -v a="$r0" -v b="$r1" -v c="$r2" -v x="$rss_before" -v y="$rss_after" 'BEGIN {
			printf "- Profile d: %d route PUTs (16 parallel curl transfers) took %.1f s, %.0f writes/s; the last route served %.2f s after the last PUT returned. Sluice RSS %.1f MiB before, %.1f MiB after the routes (idle).\n", n, b - a, n / (b - a), c - b, x / 1024, y / 1024
		}' >>"$NOTES"
		run_profile d "$NGXM_TREE" "http://127.0.0.1:$NGX_MANY/r/$ROUTES" "http://127.0.0.1:$SL_PORT/r/$ROUTES"
		;;
	*) die "unknown profile $profile (a, d or e)" ;;
	esac
done
T_END=$(date +%s)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
mkdir -p "$RESULTS"
REPORT="$RESULTS/$STAMP.md"
{
	echo "# Sluice vs nginx, $STAMP"
	echo
	echo "| item | value |"
	echo "|---|---|"
	echo "| host | $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r) |"
	echo "| sluice | $SLUICE_REV, $(go version | awk '{print $3}'), GOMAXPROCS from the affinity mask (1) |"
	echo "| nginx | $(nginx -v 2>&1 | sed 's/^nginx version: //'), 1 worker, proxy and origin |"
	echo "| wrk | $(wrk -v 2>&1 | head -1 | awk '{print $2}'), -t1, --timeout 5s |"
	echo "| mode | $MODE: $ROUNDS rounds x ${DURATION}s per connection count ($CONNS), ${WARMUP}s warm-up per target, rounds interleaved nginx/sluice |"
	echo "| pinning | proxy under test on CPU $PROXY_CPU; origin (nginx, 1 KiB) and wrk on CPU $LOAD_CPU |"
	echo "| load average | $LOAD_START at start, $LOAD_END at end; $((T_END - T_START)) s of measuring |"
	echo
	echo "Key figure: Sluice's requests per proxy CPU-second divided by nginx's, per round (each"
	echo "Sluice round against the nginx round just before it), median and range over rounds."
	echo "When the load core (wrk + origin) is near 1.00 busy, the proxy's req/s is capped by the"
	echo "load side, not by the proxy; requests per proxy CPU-second stays comparable."
	echo
} >"$REPORT"

awk -F'\t' -v PROFILES="$PROFILES" -v CONNS="$CONNS" -v MINC="$MIN_CORES" -v MINS="$MIN_CPU_S" -v PCPU="$PROXY_CPU" -v LCPU="$LOAD_CPU" '
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
BEGIN {
	name["a"] = "(a) plain proxy, one route, 1 KiB response"
	name["e"] = "(e) TLS termination, one route, 1 KiB response"
	name["d"] = "(d) 10,000 routes, requests to the last one created"
}
{
	p = $1; c = $2; r = $3; t = $4
	kpcs = ($8 > 0) ? $5 / $8 / 1000 : 0
	# A round in which the proxy got less than MINC cores was starved by
	# other work on the machine; it is left out of the medians (the raw table
	# keeps it, marked).
	ok = ($7 >= MINC)
	usable = ($8 >= MINS)
	for (v = (usable ? 0 : 2); v <= ok; v++) {
		k = p SUBSEP c SUBSEP t SUBSEP v
		add(k SUBSEP "rps", $6); add(k SUBSEP "cores", $7); add(k SUBSEP "kpcs", kpcs)
		add(k SUBSEP "p50", $9); add(k SUBSEP "p99", $10); add(k SUBSEP "load", $15)
		f = $14 - $7; if (f < 0) f = 0; add(k SUBSEP "foreign", f)
		N2[k] += $11; SE[k] += $12; if ($13 > RSS[k]) RSS[k] = $13; if ($17 > PSS[k]) PSS[k] = $17
	}
	k = p SUBSEP c SUBSEP r SUBSEP t
	KP[k] = kpcs; RP[k] = $6; OK[k] = ok; US[k] = usable
	if (!((p SUBSEP c SUBSEP r) in seenr)) { seenr[p SUBSEP c SUBSEP r] = 1; rounds[p SUBSEP c] = rounds[p SUBSEP c] " " r }
	raw[NR] = sprintf("| %s | %s | %s | %s | %.0f | %.2f%s | %.1f | %.2f | %.2f | %d | %d | %.1f | %.1f | %.2f | %.2f |", p, c, r, t, $6, $7, ok ? "" : (usable ? " (starved)" : " (unusable)"), kpcs, $9, $10, $11, $12, $13 / 1024, $17 / 1024, $14, $15)
}
END {
	np = split(PROFILES, P, " "); nc = split(CONNS, C, " ")
	for (i = 1; i <= np; i++) for (j = 1; j <= nc; j++) {
		pc = P[i] SUBSEP C[j]
		nr = split(rounds[pc], R, " ")
		for (x = 1; x <= nr; x++) {
			s = pc SUBSEP R[x] SUBSEP "sluice"; n = pc SUBSEP R[x] SUBSEP "nginx"
			if (!(s in KP) || !(n in KP) || KP[n] <= 0 || RP[n] <= 0 || !US[s] || !US[n]) continue
			add(pc SUBSEP "ratio" SUBSEP 0, KP[s] / KP[n]); add(pc SUBSEP "rratio" SUBSEP 0, RP[s] / RP[n])
			if (OK[s] && OK[n]) { add(pc SUBSEP "ratio" SUBSEP 1, KP[s] / KP[n]); add(pc SUBSEP "rratio" SUBSEP 1, RP[s] / RP[n]) }
		}
	}
	print "## Summary: Sluice / nginx, requests per proxy CPU-second"
	print ""
	printf "Median over pairs in which both proxies got at least %.2f cores; when every pair of a row\n", MINC
	print "was starved by other work on the machine, the median over all its pairs, marked \"all starved\"."
	printf "Rounds in which a proxy used less than %s CPU-seconds are left out everywhere (too few clock ticks).\n", MINS
	print ""
	print "| profile | conns | **Sluice / nginx per CPU-s** | range | basis | all pairs: median (range) | Sluice / nginx req/s | nginx k req/CPU-s | Sluice k req/CPU-s |"
	print "|---|---:|---:|---:|---|---:|---:|---:|---:|"
	for (i = 1; i <= np; i++) for (j = 1; j <= nc; j++) {
		pc = P[i] SUBSEP C[j]; all = L[pc SUBSEP "ratio" SUBSEP 0]
		if (all == "") {
			if (rounds[pc] != "") printf "| %s | %s | n/a | | no usable pair | | | | |\n", name[P[i]], C[j]
			continue
		}
		cl = L[pc SUBSEP "ratio" SUBSEP 1]
		v = (cl == "") ? 0 : 1
		use = v ? cl : all
		basis = v ? sprintf("%d of %d pairs", cnt(cl), cnt(all)) : sprintf("%d pair%s, all starved", cnt(all), cnt(all) == 1 ? "" : "s")
		printf "| %s | %s | **%.2f** | %.2f–%.2f | %s | %.2f (%.2f–%.2f) | %.2f | %.1f | %.1f |\n", name[P[i]], C[j], med(use), lo(use), hi(use), basis, med(all), lo(all), hi(all), med(L[pc SUBSEP "rratio" SUBSEP v]), med(L[P[i] SUBSEP C[j] SUBSEP "nginx" SUBSEP v SUBSEP "kpcs"]), med(L[P[i] SUBSEP C[j] SUBSEP "sluice" SUBSEP v SUBSEP "kpcs"])
	}
	print ""
	print "## Per profile (medians over rounds that were not starved; errors summed; memory is the maximum after a round)"
	print ""
	print "\"proxy CPU\" is CPU-seconds the proxy process tree used per wall second (utime+stime from"
	print "/proc/PID/stat); \"load core\" is how busy CPU " LCPU " (wrk + origin) was; \"foreign on proxy core\""
	print "is CPU " PCPU " time not used by the proxy (other work on the machine), in cores. RSS and"
	print "PSS are summed over the proxy process tree (nginx: master + worker, whose shared pages RSS"
	print "counts twice and PSS splits). \"rounds\" counts the rounds behind the medians."
	for (i = 1; i <= np; i++) {
		print ""
		print "### " name[P[i]]
		print ""
		print "| conns | proxy | rounds | req/s | proxy CPU (cores) | k req / proxy CPU-s | p50 ms | p99 ms | non-2xx | socket errors | RSS MiB | PSS MiB | load core | foreign on proxy core |"
		print "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for (j = 1; j <= nc; j++) for (z = 1; z <= 2; z++) {
			t = (z == 1) ? "nginx" : "sluice"
			k = P[i] SUBSEP C[j] SUBSEP t SUBSEP 1
			nall = cnt(L[P[i] SUBSEP C[j] SUBSEP t SUBSEP 0 SUBSEP "rps"])
			used = sprintf("%d of %d", cnt(L[k SUBSEP "rps"]), nall)
			if (L[k SUBSEP "rps"] == "") { k = P[i] SUBSEP C[j] SUBSEP t SUBSEP 0; used = "all " nall " starved" }
			if (L[k SUBSEP "rps"] == "") { printf "| %s | %s | none usable | | | | | | | | | | | |\n", C[j], t; continue }
			if (L[k SUBSEP "rps"] == "") continue
			printf "| %s | %s | %s | %.0f | %.2f | %.1f | %.2f | %.2f | %d | %d | %.1f | %.1f | %.2f | %.2f |\n", C[j], t, used, med(L[k SUBSEP "rps"]), med(L[k SUBSEP "cores"]), med(L[k SUBSEP "kpcs"]), med(L[k SUBSEP "p50"]), med(L[k SUBSEP "p99"]), N2[k], SE[k], RSS[k] / 1024, PSS[k] / 1024, med(L[k SUBSEP "load"]), med(L[k SUBSEP "foreign"])
		}
	}
	print ""
	print "## Every round"
	print ""
	print "| profile | conns | round | proxy | req/s | proxy CPU (cores) | k req / CPU-s | p50 ms | p99 ms | non-2xx | socket errors | RSS MiB | PSS MiB | CPU " PCPU " busy | CPU " LCPU " busy |"
	print "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
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
log "report: $REPORT"
