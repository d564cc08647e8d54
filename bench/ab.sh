#!/usr/bin/env bash
# bench/ab.sh: two Sluice binaries against nginx, paired, for judging an
# engine change when whole bench/run.sh runs drift more than the change.
#
# Usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS=10] [SECONDS=3] [CONNS=50]
#
# One nginx origin (1 KiB body) and the load generator on CPU 1; an nginx
# proxy and the two Sluice processes (fast engine, one catch-all route)
# pinned to CPU 0. Each round runs wrk against nginx, OLD and NEW in turn,
# and prints requests per proxy CPU-second (utime+stime of the process
# tree from /proc) with user and system microseconds per request. The
# summary gives the medians of OLD/nginx, NEW/nginx and NEW/OLD over the
# rounds. Needs nginx, wrk, curl and taskset (bench/run.sh installs them).
# Environment: ENV_A / ENV_B: extra environment for OLD / NEW (e.g.
# GODEBUG=gctrace=1); ENGINE (fast).
set -u
A=${1:?old binary}; B=${2:?new binary}; ROUNDS=${3:-10}; DUR=${4:-3}; CONNS=${5:-50}
T=$(mktemp -d /tmp/sluice-ab.XXXX)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$T"' EXIT
BODY=$(head -c 1024 /dev/zero | tr '\0' 'x')
UP=21080 NGX=21081
mkdir -p "$T/o" "$T/n"
temp_paths() { echo "client_body_temp_path $1/cb; proxy_temp_path $1/pt; fastcgi_temp_path $1/ft; uwsgi_temp_path $1/ut; scgi_temp_path $1/st;"; }
cat >"$T/o/nginx.conf" <<EOC
daemon off; worker_processes 1; pid $T/o/pid; error_log $T/o/err warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 75s; $(temp_paths "$T/o")
 server { listen 127.0.0.1:$UP backlog=4096; default_type application/octet-stream; location / { return 200 "$BODY"; } } }
EOC
cat >"$T/n/nginx.conf" <<EOC
daemon off; worker_processes 1; pid $T/n/pid; error_log $T/n/err warn;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 75s; $(temp_paths "$T/n")
 upstream origin { server 127.0.0.1:$UP; keepalive 320; }
 proxy_http_version 1.1; proxy_set_header Connection "";
 proxy_set_header Host \$http_host; proxy_set_header X-Real-IP \$remote_addr;
 proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto \$scheme;
 proxy_set_header X-Forwarded-Host \$host; proxy_set_header X-Forwarded-Port \$server_port;
 server { listen 127.0.0.1:$NGX backlog=4096; location / { proxy_pass http://origin; } } }
EOC
taskset -c 1 nginx -e "$T/o/err" -p "$T/o" -c "$T/o/nginx.conf" &
taskset -c 0 nginx -e "$T/n/err" -p "$T/n" -c "$T/n/nginx.conf" & NP=$!
declare -A PORT PID
i=0
for name in A B; do
	bin=${!name}; i=$((i + 1)); d=$T/s$name; mkdir -p "$d"
	PORT[$name]=$((21100 + i * 10))
	cat >"$d/config.yaml" <<EOC
sluice:
  engine: ${ENGINE:-fast}
apisix:
  node_listen:
    - ip: 127.0.0.1
      port: ${PORT[$name]}
  ssl:
    enable: false
plugin_attr:
  prometheus:
    export_addr:
      ip: 127.0.0.1
      port: $((21300 + i * 10))
deployment:
  admin:
    admin_key:
      - name: admin
        key: k0123456789
        role: admin
    admin_listen:
      ip: 127.0.0.1
      port: $((21200 + i * 10))
EOC
	ev=ENV_$name
	(cd "$d" && exec taskset -c 0 env ${!ev:-SLUICE_AB=1} "$bin" run -c "$d/config.yaml" >"$d/log" 2>&1) &
	PID[$name]=$!
done
for port in 21210 21220; do
	for _ in $(seq 50); do curl -s -o /dev/null -H "X-API-KEY: k0123456789" "localhost:$port/apisix/admin/routes" && break; sleep 0.2; done
	curl -s -o /dev/null -X PUT -H "X-API-KEY: k0123456789" "localhost:$port/apisix/admin/routes/1" \
		-d "{\"uri\":\"/*\",\"upstream\":{\"nodes\":{\"127.0.0.1:$UP\":1}}}"
done
sleep 1
# ticks PID...: utime*1e6+stime of the processes' threads, in clock ticks.
ticks() { local s=0 p t; for p in "$@"; do for t in /proc/$p/task/*/stat; do s=$((s + $(awk '{print $14*1000000+$15}' "$t" 2>/dev/null || echo 0))); done; done; echo $s; }
tree() { echo "$1" $(pgrep -P "$1"); }
hz=$(getconf CLK_TCK)
run() { # name port pids...
	local name=$1 port=$2; shift 2
	local t0 t1 reqs
	t0=$(ticks "$@")
	taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$port/hello" >"$T/wrk.out" 2>&1
	t1=$(ticks "$@")
	reqs=$(awk '/requests in/ {print $1}' "$T/wrk.out")
	awk -v n="$name" -v r="$reqs" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v p99="$(awk '$1=="99%"{print $2}' "$T/wrk.out")" 'BEGIN{
		u=(int(t1/1000000)-int(t0/1000000))/hz; s=((t1%1000000)-(t0%1000000))/hz
		printf "%-5s req/cpu-s %7.0f  usr %5.2f us/req  sys %5.2f us/req  p99 %s\n", n, r/(u+s), u/r*1e6, s/r*1e6, p99}'
}
for port in $NGX ${PORT[A]} ${PORT[B]}; do taskset -c 1 wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$port/hello" >/dev/null; done
echo "conns $CONNS, $ROUNDS rounds x ${DUR}s; A=$A B=$B"
for r in $(seq "$ROUNDS"); do
	run nginx $NGX $(tree $NP)
	run A "${PORT[A]}" $(tree "${PID[A]}")
	run B "${PORT[B]}" $(tree "${PID[B]}")
done | tee "$T/rounds.txt"
awk '{print $3}' "$T/rounds.txt" | paste - - - | awk '
	{ an[NR]=$2/$1; bn[NR]=$3/$1; ba[NR]=$3/$2 }
	function med(a, n,   i, j, t) { for (i=1;i<=n;i++) for (j=i+1;j<=n;j++) if (a[j]<a[i]) { t=a[i]; a[i]=a[j]; a[j]=t }
		return (n%2) ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2 }
	END { printf "medians over %d rounds: A/nginx %.2f  B/nginx %.2f  B/A %.2f\n", NR, med(an,NR), med(bn,NR), med(ba,NR) }'
