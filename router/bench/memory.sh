#!/usr/bin/env bash
# Router memory per 1,000 routes, as router/bench/run.sh measures it, repeated for medians:
# the resident size (VmRSS) of a router serving 1 route and of one serving the benchmark's
# 1,000 routes (host name, a rule matching a path and a header, a 90/10 split; 2,000 backends),
# each idle 2 s after start and again after every route served one request. Loopback only.
#
#   router/bench/memory.sh [REPS]     (default 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-5}
cargo build --release --locked -p siskin-router >/dev/null
ROUTER=$(pwd)/target/release/siskin-router
RUN=$(mktemp -d /tmp/siskin-memory.XXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$RUN"; }
trap cleanup EXIT

# Upstreams that answer 200, so "used" means served.
python3 -m http.server 18081 --bind 127.0.0.1 --directory "$RUN" >/dev/null 2>&1 & PIDS+=($!)
python3 -m http.server 18082 --bind 127.0.0.1 --directory "$RUN" >/dev/null 2>&1 & PIDS+=($!)
python3 router/bench/tables.py "$RUN"
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
start() { # config port -> pid
  "$ROUTER" --config "$1" --listen "127.0.0.1:$2" --admin-addr "127.0.0.1:$(($2 + 1))" --workers 1 >/dev/null 2>&1 &
  echo $!
}
IDLE=(); USED=()
for r in $(seq 1 "$REPS"); do
  one=$(start "$RUN/one.yaml" 18120); PIDS+=("$one"); sleep 2
  a=$(rss "$one"); curl -s -o /dev/null http://127.0.0.1:18120/; b=$(rss "$one"); kill "$one"
  many=$(start "$RUN/many.yaml" 18110); PIDS+=("$many"); sleep 2
  c=$(rss "$many")
  for i in $(seq 0 999); do curl -s -o /dev/null -H "Host: svc-$i.example" http://127.0.0.1:18110/; done
  d=$(rss "$many"); kill "$many"; wait "$many" 2>/dev/null || true
  echo "rep $r: 1 route $a KiB idle, $b KiB used; 1,000 routes $c KiB idle, $d KiB used; per 1,000 routes $((c - a)) KiB idle, $((d - b)) KiB used"
  IDLE+=($((c - a))); USED+=($((d - b)))
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mi=$(median "${IDLE[@]}"); mu=$(median "${USED[@]}")
awk -v i="$mi" -v u="$mu" -v n="$REPS" 'BEGIN {printf "median of %d: %.1f MiB per 1,000 routes idle, %.1f MiB used\n", n, i/1024, u/1024}'
