# Shared by router/bench/run.sh, pair.sh and soak.sh (sourced, not run): the tools, the
# certificate, the upstream and the nginx proxy, the router's table, and the paired measurement.
# Loopback only; every load is bounded in time. Layout (2 cores): upstream and proxies share
# CPU 0, the load generator runs on CPU 1.

need() { command -v "$1" >/dev/null 2>&1; }
bench_tools() {
  if ! need nginx || ! need wrk || ! need taskset || ! need h2load || ! need openssl; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk util-linux nghttp2-client openssl >/dev/null
  fi
  need oha || cargo install oha --locked
}

RUN=$(mktemp -d /tmp/siskin-bench.XXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$RUN"; }
trap cleanup EXIT

# The upstream: one nginx worker answering 200 "ok-a" on PORT_A and "ok-b" on PORT_B.
upstream_conf() { # port_a port_b
  cat >"$RUN/upstream.conf" <<NGX
worker_processes 1; daemon off; pid $RUN/upstream.pid; error_log $RUN/upstream.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 75s;
  server { listen 127.0.0.1:$1 backlog=4096; location / { return 200 "ok-a\n"; } }
  server { listen 127.0.0.1:$2 backlog=4096; location / { return 200 "ok-b\n"; } } }
NGX
}

# Writes the certificate, the upstream's and nginx proxy's configurations and the router's
# table (the benchmarked 90/10 route with a retry policy and timeouts among 99 other routes),
# starts the upstream and nginx on CPU 0, and sets NGINX_WORKER.
bench_setup() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$RUN/key.pem" -out "$RUN/cert.pem" 2>/dev/null
  upstream_conf 18081 18082
  cat >"$RUN/proxy.conf" <<NGX
worker_processes 1; daemon off; pid $RUN/proxy.pid; error_log $RUN/proxy.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 75s;
  proxy_http_version 1.1; proxy_set_header Connection "";
  upstream up_a { server 127.0.0.1:18081; keepalive 128; keepalive_requests 1000000; }
  upstream up_b { server 127.0.0.1:18082; keepalive 128; keepalive_requests 1000000; }
  split_clients "\${request_id}" \$split_backend { 90% up_a; * up_b; }
  server { listen 127.0.0.1:18083 backlog=4096; listen 127.0.0.1:18084 http2 backlog=4096;
    listen 127.0.0.1:18443 ssl http2 backlog=4096;
    ssl_certificate $RUN/cert.pem; ssl_certificate_key $RUN/key.pem;
    location / { proxy_pass http://\$split_backend; } } }
NGX
  {
    echo "routes:"
    for i in $(seq 99); do
      echo "- name: bench/host-$i"
      echo "  hostnames: [svc-$i.example]"
      echo "  rules:"
      echo "  - matches: [{path: {value: /api}, headers: [{name: x-canary, value: insider}]}]"
      echo "    backendRefs: [{name: b}]"
      echo "  - backendRefs: [{name: a}]"
    done
    cat <<YAML
- name: bench/split
  rules:
  - backendRefs: [{name: a, weight: 90}, {name: b, weight: 10}]
    retry: {attempts: 1, codes: [503]}
    timeouts: {request: 15s, backendRequest: 10s}
backends:
- {name: a, role: primary, endpoints: ["127.0.0.1:18081"]}
- {name: b, role: canary, endpoints: ["127.0.0.1:18082"]}
YAML
  } >"$RUN/router.yaml"
  taskset -c 0 nginx -c "$RUN/upstream.conf" & PIDS+=($!)
  taskset -c 0 nginx -c "$RUN/proxy.conf" & PIDS+=($!)
  sleep 1
  NGINX_WORKER=$(pgrep -P "$(cat "$RUN/proxy.pid")" | head -1)
}

# Starts BINARY on CPU 0 with the benchmark's table, one worker, cleartext on PORT and admin on
# PORT+1, plus any further arguments; sets STARTED to its pid.
start_router() { # binary port [args...]
  local bin=$1 port=$2; shift 2
  taskset -c 0 "$bin" --config "$RUN/router.yaml" --listen "127.0.0.1:$port" \
    --admin-addr "127.0.0.1:$((port + 1))" --workers 1 "$@" >"$RUN/router-$port.log" 2>&1 &
  STARTED=$!; PIDS+=("$STARTED")
}

TCK=$(getconf CLK_TCK)
cpu_ticks() { [ -n "$1" ] && awk '{print $14+$15}' "/proc/$1/stat" || echo 0; }
per_req() { awk -v d="$1" -v n="$2" -v hz="$TCK" 'BEGIN {printf "%.2f", d/hz*1e6/n}'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
range() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {print lo "–" hi}'; }

# One closed-loop load from CPU 1 for SECONDS: wrk -t1 -c64 (HTTP/1.1, cleartext or TLS by
# the URL's scheme) or h2load -t1 -c16 -m10 (h2: prior knowledge for http, ALPN for https).
load() { # wrk|h2 url seconds
  case "$1" in
    wrk) taskset -c 1 wrk -t1 -c64 -d"$3"s "$2" ;;
    h2) taskset -c 1 h2load -t1 -c16 -m10 -D "$3" "$2" 2>/dev/null ;;
  esac
}
# Requests a load's output (on stdin) says were served.
served() { # wrk|h2
  case "$1" in
    wrk) awk '/requests in/ {print $1}' ;;
    h2) awk '/^requests:/ {for (i=2;i<=NF;i++) if ($i == "done,") print $(i-1)}' ;;
  esac
}

# Paired measurement: loads two proxies at the same time for SECONDS with the same KIND of load
# (see load), both generators on CPU 1 and both proxies on CPU 0, so whatever else the host
# does falls on both alike. Prints "cpu_b/cpu_a rps_b/rps_a cpu_a cpu_b" (CPU per request from
# /proc/<pid>/stat). Which load starts first alternates with ODD (1 or 0), so start order
# cancels over repetitions.
pair() { # kind url_a pid_a url_b pid_b seconds [odd]
  if [ "${7:-1}" = 0 ]; then
    pair "$1" "$4" "$5" "$2" "$3" "$6" 1 | awk '{printf "%.3f %.3f %s %s\n", 1/$1, 1/$2, $4, $3}'
    return
  fi
  local a0 b0 a1 b1 na nb ca cb w
  load "$1" "$2" 1 >/dev/null 2>&1 & w=$!
  load "$1" "$4" 1 >/dev/null 2>&1; wait "$w"
  a0=$(cpu_ticks "$3"); b0=$(cpu_ticks "$5")
  load "$1" "$2" "$6" >"$RUN/pair-a.out" & w=$!
  load "$1" "$4" "$6" >"$RUN/pair-b.out"; wait "$w"
  a1=$(cpu_ticks "$3"); b1=$(cpu_ticks "$5")
  na=$(served "$1" <"$RUN/pair-a.out"); nb=$(served "$1" <"$RUN/pair-b.out")
  ca=$(per_req $((a1 - a0)) "$na"); cb=$(per_req $((b1 - b0)) "$nb")
  awk -v ca="$ca" -v cb="$cb" -v na="$na" -v nb="$nb" 'BEGIN {printf "%.3f %.3f %s %s\n", cb/ca, nb/na, ca, cb}'
}

# Paired latency: oha at RATE requests/s against two proxies at the same time for SECONDS
# (coordinated-omission corrected). Prints "p50_a p99_a p50_b p99_b" in µs.
pair_latency() { # url_a url_b rate seconds
  local w
  taskset -c 1 oha -z "$4s" -c 16 -q "$3" --latency-correction --no-tui --output-format json "$1" >"$RUN/lat-a.json" & w=$!
  taskset -c 1 oha -z "$4s" -c 16 -q "$3" --latency-correction --no-tui --output-format json "$2" >"$RUN/lat-b.json"
  wait "$w"
  python3 - "$RUN/lat-a.json" "$RUN/lat-b.json" <<'PY'
import json, sys
out = []
for f in sys.argv[1:]:
    p = json.load(open(f))["latencyPercentiles"]
    out += ["%.0f" % (p["p50"] * 1e6), "%.0f" % (p["p99"] * 1e6)]
print(" ".join(out))
PY
}
