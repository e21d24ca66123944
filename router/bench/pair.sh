#!/usr/bin/env bash
# Paired A/B of two siskin-router builds, and of each against nginx: the two targets of a pair
# are loaded at the same time (wrk -t1 -c64 each, on CPU 1; both proxies and the upstream on
# CPU 0), so the host's drift, which moves sequential runs by more than most changes, falls on
# both alike. Prints per-repetition ratios of CPU per request and of throughput, then medians
# and ranges. Loopback only, bounded in time (REPS × 3 × SECONDS).
#
#   router/bench/pair.sh BINARY_A BINARY_B [REPS] [SECONDS]     defaults: 8 repetitions, 5 s
#
# A build against itself (BINARY_A = BINARY_B) shows the method's own spread.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { sed -n '2,10p' "$0"; exit 2; }
A=$(realpath "$1"); B=$(realpath "$2"); REPS=${3:-8}; SECS=${4:-5}
source router/bench/lib.sh
bench_tools
bench_setup
start_router "$A" 18100; PA=$STARTED
start_router "$B" 18200; PB=$STARTED
sleep 1.5
NGINX=http://127.0.0.1:18083/; UA=http://127.0.0.1:18100/; UB=http://127.0.0.1:18200/
for u in $NGINX $UA $UB; do curl -sf "$u" >/dev/null || { echo "no answer from $u"; exit 1; }; done
declare -A CPU THR
for rep in $(seq "$REPS"); do
  for p in "b/a $UA $PA $UB $PB" "a/nginx $NGINX $NGINX_WORKER $UA $PA" "b/nginx $NGINX $NGINX_WORKER $UB $PB"; do
    set -- $p
    read -r cr tr ca cb < <(pair wrk "$2" "$3" "$4" "$5" "$SECS" $((rep % 2)))
    echo "rep $rep $1: CPU per request $cb / $ca µs = $cr, throughput $tr"
    CPU[$1]+="$cr "; THR[$1]+="$tr "
  done
done
for k in b/a a/nginx b/nginx; do
  echo "$k: CPU per request $(echo "${CPU[$k]}" | median) (range $(echo "${CPU[$k]}" | range)), throughput $(echo "${THR[$k]}" | median) (range $(echo "${THR[$k]}" | range)), $REPS reps of ${SECS} s"
done
