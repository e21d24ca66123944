#!/usr/bin/env bash
# Router benchmark: direct vs nginx vs siskin-router, same upstream, same 90/10 split, same
# worker count, in one run. Loopback only; every load is bounded in time.
#
#   router/bench/run.sh [--quick] [--reps N] [--write]     --write updates docs/benchmarks.md
#
# Layout (2 cores): upstream nginx and the proxy under test share CPU 0, the load generator
# runs on CPU 1. Throughput: wrk -t1 -c64 (HTTP/1.1) and h2load (HTTP/2), closed loop, in
# cleartext and with TLS from the client. Latency: oha at a fixed rate with coordinated-omission
# correction. CPU per request from /proc/<pid>/stat. Targets are interleaved within each rep.
# Paired: nginx and siskin loaded at the same time (lib.sh's pair and pair_latency), which
# cancels the host's drift between sequential runs; siskin against a second copy of itself
# shows the method's bias.
#
# The siskin side has its features armed as a user's table would: the benchmarked route splits
# 90/10, carries a retry policy (503, one more attempt) and request and backend timeouts, and
# sits among 99 other routes with host names and header matches; statistics and metrics are
# always on. nginx's proxy has its defaults armed likewise (proxy_next_upstream, timeouts).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
QUICK=0; WRITE=0
REPS=3; DUR=10; RATE=2000; PAIR_SECS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --write) WRITE=1 ;;
    --reps) REPS=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$QUICK" = 1 ] && { REPS=1; DUR=5; PAIR_SECS=3; }

source router/bench/lib.sh
bench_tools
cargo build --release --locked -p siskin-router >/dev/null
ROUTER=$ROOT/target/release/siskin-router
bench_setup
start_router "$ROUTER" 18100 --tls-listen 127.0.0.1:18543 --tls-certificate "$RUN/cert.pem,$RUN/key.pem"
ROUTER_PID=$STARTED
sleep 1.5

declare -A URL=([direct]=http://127.0.0.1:18081/ [nginx]=http://127.0.0.1:18083/ [siskin]=http://127.0.0.1:18100/)
declare -A H2C=([direct]="" [nginx]=http://127.0.0.1:18084/ [siskin]=http://127.0.0.1:18100/)
declare -A TLS=([nginx]=https://127.0.0.1:18443/ [siskin]=https://127.0.0.1:18543/)
declare -A PID=([direct]="" [nginx]=$NGINX_WORKER [siskin]=$ROUTER_PID)
for t in nginx siskin; do
  split=$(for i in $(seq 200); do curl -s "${URL[$t]}"; done | sort | uniq -c | tr '\n' ' ')
  echo "split check $t: $split"
  curl -sf --http2-prior-knowledge "${H2C[$t]}" >/dev/null || { echo "$t: no h2c answer"; exit 1; }
  curl -sfk --http2 "${TLS[$t]}" >/dev/null || { echo "$t: no TLS answer"; exit 1; }
done

declare -A RPS CPU P50 P99 P999 H2RPS H2CPU H2MEAN TLSRPS TLSCPU TH2RPS TH2CPU
# h2load's summary: requests/s from "finished in", mean request time (µs). Every measured load
# follows a warm-up of its own kind that is not counted (the CPU ticks and the requests cover
# the same seconds).
h2rps() { awk '/^finished in/ {for (i=1;i<=NF;i++) if ($i ~ /req\/s/) {gsub(",","",$(i-1)); print $(i-1)}}'; }
h2mean() { awk '/^time for request:/ {v=$6; if (v ~ /ms$/) {sub("ms","",v); v*=1000} else if (v ~ /us$/) {sub("us","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1e6}; print v}'; }

for rep in $(seq "$REPS"); do
  for t in direct nginx siskin; do
    load wrk "${URL[$t]}" 2 >/dev/null 2>&1
    c0=$(cpu_ticks "${PID[$t]}")
    out=$(load wrk "${URL[$t]}" "$DUR")
    c1=$(cpu_ticks "${PID[$t]}")
    RPS[$t]+="$(echo "$out" | awk '/Requests\/sec/ {print $2}') "
    [ "$t" != direct ] && CPU[$t]+="$(per_req $((c1-c0)) "$(echo "$out" | served wrk)") "
    js=$(taskset -c 1 oha -z "${DUR}s" -c 16 -q "$RATE" --latency-correction --no-tui --output-format json "${URL[$t]}")
    P50[$t]+="$(echo "$js" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["latencyPercentiles"]["p50"]*1e6)') "
    P99[$t]+="$(echo "$js" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["latencyPercentiles"]["p99"]*1e6)') "
    P999[$t]+="$(echo "$js" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["latencyPercentiles"]["p99.9"]*1e6)') "
    [ "$t" = direct ] && continue
    # HTTP/2 from the client (h2c), HTTP/1.1 to the upstream.
    load h2 "${H2C[$t]}" 1 >/dev/null
    c0=$(cpu_ticks "${PID[$t]}"); out=$(load h2 "${H2C[$t]}" "$DUR"); c1=$(cpu_ticks "${PID[$t]}")
    H2RPS[$t]+="$(echo "$out" | h2rps) "; H2MEAN[$t]+="$(echo "$out" | h2mean) "
    H2CPU[$t]+="$(per_req $((c1-c0)) "$(echo "$out" | served h2)") "
    # TLS from the client: HTTP/1.1 (wrk, keep-alive) and HTTP/2 (h2load, ALPN h2).
    load wrk "${TLS[$t]}" 2 >/dev/null 2>&1
    c0=$(cpu_ticks "${PID[$t]}"); out=$(load wrk "${TLS[$t]}" "$DUR"); c1=$(cpu_ticks "${PID[$t]}")
    TLSRPS[$t]+="$(echo "$out" | awk '/Requests\/sec/ {print $2}') "
    TLSCPU[$t]+="$(per_req $((c1-c0)) "$(echo "$out" | served wrk)") "
    load h2 "${TLS[$t]}" 1 >/dev/null
    c0=$(cpu_ticks "${PID[$t]}"); out=$(load h2 "${TLS[$t]}" "$DUR"); c1=$(cpu_ticks "${PID[$t]}")
    TH2RPS[$t]+="$(echo "$out" | h2rps) "
    TH2CPU[$t]+="$(per_req $((c1-c0)) "$(echo "$out" | served h2)") "
  done
done

# Paired: nginx and siskin at the same time, and siskin with a second copy of itself.
start_router "$ROUTER" 18200; SELF_PID=$STARTED; sleep 1
declare -A PCPU PTHR
KINDS=(http1 h2c tls tls-h2)
declare -A LOAD=([http1]=wrk [h2c]=h2 [tls]=wrk [tls-h2]=h2)
declare -A PURL_N=([http1]=${URL[nginx]} [h2c]=${H2C[nginx]} [tls]=${TLS[nginx]} [tls-h2]=${TLS[nginx]})
declare -A PURL_S=([http1]=${URL[siskin]} [h2c]=${H2C[siskin]} [tls]=${TLS[siskin]} [tls-h2]=${TLS[siskin]})
SCPU=""; STHR=""; LN50=""; LN99=""; LS50=""; LS99=""
for rep in $(seq "$REPS"); do
  read -r n50 n99 s50 s99 < <(pair_latency "${URL[nginx]}" "${URL[siskin]}" "$RATE" "$DUR")
  LN50+="$n50 "; LN99+="$n99 "; LS50+="$s50 "; LS99+="$s99 "
  for k in "${KINDS[@]}"; do
    read -r cr tr _ < <(pair "${LOAD[$k]}" "${PURL_N[$k]}" "$NGINX_WORKER" "${PURL_S[$k]}" "$ROUTER_PID" "$PAIR_SECS" $((rep % 2)))
    PCPU[$k]+="$cr "; PTHR[$k]+="$tr "
  done
  read -r cr tr _ < <(pair wrk "${URL[siskin]}" "$ROUTER_PID" http://127.0.0.1:18200/ "$SELF_PID" "$PAIR_SECS" $((rep % 2)))
  SCPU+="$cr "; STHR+="$tr "
done
kill "$SELF_PID"

# Weight changes under load: 0 -> 100 % in 5 % steps and back, every 100 ms, at a fixed rate.
( for i in $(seq 0 40); do w=$(( i <= 20 ? i*5 : (40-i)*5 ));
    sed "s/{name: a, weight: [0-9]*}, {name: b, weight: [0-9]*}/{name: a, weight: $((100-w))}, {name: b, weight: $w}/" "$RUN/router.yaml" > "$RUN/router.tmp" && mv "$RUN/router.tmp" "$RUN/router.yaml"
    sleep 0.1; done ) &
CHG=$(taskset -c 1 oha -z 5s -c 16 -q "$RATE" --no-tui --output-format json "${URL[siskin]}")
wait $!
CODES=$(echo "$CHG" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("status codes", json.dumps(d.get("statusCodeDistribution", {})) + ", client-side errors", json.dumps(d.get("errorDistribution", {})))')
GENS=$(curl -s 127.0.0.1:18101/metrics | awk '/^siskin_router_config_generation/ {print $2}')

# Memory: RSS with 1 route, and with 1,000 routes (each with its own backends) idle and after
# every route served one request.
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
python3 router/bench/tables.py "$RUN"
"$ROUTER" --config "$RUN/one.yaml" --listen 127.0.0.1:18120 --admin-addr 127.0.0.1:18121 --workers 1 >/dev/null 2>&1 & PIDS+=($!)
ONE=$!; sleep 2; RSS1_IDLE=$(rss "$ONE"); curl -s -o /dev/null http://127.0.0.1:18120/; RSS1=$(rss "$ONE")
"$ROUTER" --config "$RUN/many.yaml" --listen 127.0.0.1:18110 --admin-addr 127.0.0.1:18111 --workers 1 >/dev/null 2>&1 & PIDS+=($!)
MANY=$!; sleep 2
RSS1000_IDLE=$(rss "$MANY")
for i in $(seq 0 999); do curl -s -o /dev/null -H "Host: svc-$i.example" http://127.0.0.1:18110/ ; done
RSS1000=$(rss "$MANY")

m() { echo "${1}" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
MACHINE="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
{
echo "Machine: $MACHINE. Command: \`router/bench/run.sh$( [ "$QUICK" = 1 ] && echo ' --quick')\` ($(date -u +%Y-%m-%d)), $REPS rep(s), medians."
echo
echo "HTTP/1.1, cleartext:"
echo
echo "| target | throughput rps (wrk -t1 -c64 -d${DUR}s) | proxy CPU µs/req | p50 µs @ ${RATE} rps | p99 µs | p99.9 µs | added p99 vs direct |"
echo "|---|---|---|---|---|---|---|"
for t in direct nginx siskin; do
  r=$(m "${RPS[$t]}"); c=$( [ "$t" = direct ] && echo "–" || m "${CPU[$t]}")
  p99=$(m "${P99[$t]}"); added=$(awk -v a="$p99" -v b="$(m "${P99[direct]}")" 'BEGIN {printf "%+.0f", a-b}')
  printf '| %s | %.0f | %s | %.0f | %.0f | %.0f | %s |\n' "$t" "$r" "$c" "$(m "${P50[$t]}")" "$p99" "$(m "${P999[$t]}")" "$( [ "$t" = direct ] && echo "–" || echo "$added")"
done
echo
echo "HTTP/2 and TLS from the client (HTTP/1.1 to the upstream in every case):"
echo
echo "| target | h2c rps (h2load -c16 -m10) | h2c CPU µs/req | h2c mean µs | TLS HTTP/1.1 rps (wrk -c64) | TLS HTTP/1.1 CPU µs/req | TLS h2 rps (h2load -c16 -m10) | TLS h2 CPU µs/req |"
echo "|---|---|---|---|---|---|---|---|"
for t in nginx siskin; do
  printf '| %s | %.0f | %s | %.0f | %.0f | %s | %.0f | %s |\n' "$t" "$(m "${H2RPS[$t]}")" "$(m "${H2CPU[$t]}")" "$(m "${H2MEAN[$t]}")" \
    "$(m "${TLSRPS[$t]}")" "$(m "${TLSCPU[$t]}")" "$(m "${TH2RPS[$t]}")" "$(m "${TH2CPU[$t]}")"
done
echo
echo "- siskin / nginx, HTTP/1.1: throughput **$(ratio "$(m "${RPS[siskin]}")" "$(m "${RPS[nginx]}")")x**, CPU per request **$(ratio "$(m "${CPU[siskin]}")" "$(m "${CPU[nginx]}")")x**"
echo "- siskin / nginx, h2c: throughput **$(ratio "$(m "${H2RPS[siskin]}")" "$(m "${H2RPS[nginx]}")")x**, CPU per request **$(ratio "$(m "${H2CPU[siskin]}")" "$(m "${H2CPU[nginx]}")")x**"
echo "- siskin / nginx, TLS HTTP/1.1: throughput **$(ratio "$(m "${TLSRPS[siskin]}")" "$(m "${TLSRPS[nginx]}")")x**, CPU per request **$(ratio "$(m "${TLSCPU[siskin]}")" "$(m "${TLSCPU[nginx]}")")x**; TLS h2: throughput **$(ratio "$(m "${TH2RPS[siskin]}")" "$(m "${TH2RPS[nginx]}")")x**, CPU per request **$(ratio "$(m "${TH2CPU[siskin]}")" "$(m "${TH2CPU[nginx]}")")x**"
echo
echo "Paired: nginx and siskin loaded at the same time, siskin / nginx, median of $REPS reps (range); -d${PAIR_SECS}s each:"
echo
echo "| | HTTP/1.1 (wrk -c64) | h2c (h2load -c16 -m10) | TLS HTTP/1.1 (wrk -c64) | TLS h2 (h2load -c16 -m10) |"
echo "|---|---|---|---|---|"
printf '| CPU per request |'; for k in "${KINDS[@]}"; do printf ' **%sx** (%s) |' "$(echo "${PCPU[$k]}" | median)" "$(echo "${PCPU[$k]}" | range)"; done; echo
printf '| throughput |'; for k in "${KINDS[@]}"; do printf ' **%sx** (%s) |' "$(echo "${PTHR[$k]}" | median)" "$(echo "${PTHR[$k]}" | range)"; done; echo
echo
echo "- the method's own bias, siskin / a second siskin (fresh, cleartext HTTP/1.1): CPU per request $(echo "$SCPU" | median)x (range $(echo "$SCPU" | range)), throughput $(echo "$STHR" | median)x"
echo "- paired latency (oha -q ${RATE} against each at once, -d${DUR}s, $REPS reps, medians): nginx p50 $(m "$LN50") µs, p99 $(m "$LN99") µs; siskin p50 $(m "$LS50") µs, p99 $(m "$LS99") µs"
echo "- added p99 over direct at ${RATE} rps: siskin $(awk -v a="$(m "${P99[siskin]}")" -v b="$(m "${P99[direct]}")" 'BEGIN {printf "%+.0f", a-b}') µs, nginx $(awk -v a="$(m "${P99[nginx]}")" -v b="$(m "${P99[direct]}")" 'BEGIN {printf "%+.0f", a-b}') µs"
echo "- weight changed 41 times in 4 s under ${RATE} rps (0 → 100 % → 0 in 5 % steps): $CODES; config generations reached $GENS (oha counts requests still in flight when its -z deadline ends as \"aborted due to deadline\")"
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }
echo "- RSS, 1 route: $(mib "$RSS1_IDLE") MiB idle, $(mib "$RSS1") MiB after a request; 1,000 routes (2,000 backends): $(mib "$RSS1000_IDLE") MiB idle, $(mib "$RSS1000") MiB after every route served one request → $(mib $((RSS1000_IDLE - RSS1_IDLE))) MiB per 1,000 routes idle (idle against idle) and $(mib $((RSS1000 - RSS1))) MiB used (used against used)"
} | tee "$RUN/result.md"

if [ "$WRITE" = 1 ]; then
  python3 - "$ROOT/docs/benchmarks.md" "$RUN/result.md" <<'PY'
import sys, re
doc, res = sys.argv[1], open(sys.argv[2]).read()
text = open(doc).read()
start, end = "<!-- bench:start -->", "<!-- bench:end -->"
text = re.sub(re.escape(start) + ".*?" + re.escape(end), start + "\n" + res + end, text, flags=re.S)
open(doc, "w").write(text)
PY
  echo "updated docs/benchmarks.md"
fi
