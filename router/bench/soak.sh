#!/usr/bin/env bash
# Router soak: steady load for a long run while the split changes every second, on loopback.
# Counts every answer that is not 2xx and samples the router's RSS, to show that weight changes
# under load fail no request and that memory stays flat. Not part of CI (it takes the run's
# length); the result is recorded in docs/benchmarks.md.
#
#   router/bench/soak.sh [--minutes N] [--rate RPS] [--write]     defaults: 10 minutes, 2000 rps
#
# Layout as in run.sh: the upstream (nginx, two ports: primary and canary) and the router on
# CPU 0, the load generator (oha, open loop) on CPU 1. Every second the canary's weight moves by
# 5 points (0 → 100 → 0 …) through the configuration file the router watches.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
MINUTES=10; RATE=2000; WRITE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --write) WRITE=1 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
SECS=$((MINUTES * 60))

source router/bench/lib.sh
if ! need nginx || ! need taskset; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx util-linux >/dev/null
fi
need oha || cargo install oha --locked
cargo build --release --locked -p siskin-router >/dev/null
ROUTER=$ROOT/target/release/siskin-router

upstream_conf 18181 18182
config() { # canary weight
  cat >"$RUN/router.tmp" <<YAML
routes:
- name: soak/split
  rules:
  - backendRefs: [{name: a, weight: $((100 - $1))}, {name: b, weight: $1}]
backends:
- {name: a, role: primary, endpoints: ["127.0.0.1:18181"]}
- {name: b, role: canary, endpoints: ["127.0.0.1:18182"]}
YAML
  mv "$RUN/router.tmp" "$RUN/router.yaml"
}
config 0
taskset -c 0 nginx -c "$RUN/upstream.conf" & PIDS+=($!)
taskset -c 0 "$ROUTER" --config "$RUN/router.yaml" --listen 127.0.0.1:18200 --admin-addr 127.0.0.1:18201 --workers 1 >"$RUN/router.log" 2>&1 & PIDS+=($!)
ROUTER_PID=$!
sleep 1.5

rss() { awk '/VmRSS/ {print $2}' "/proc/$ROUTER_PID/status"; }
echo "soak: ${MINUTES} min at ${RATE} rps, weight change every second; RSS (KiB) every 30 s:"
( step=5; w=0
  for i in $(seq "$SECS"); do
    w=$((w + step)); if [ $w -ge 100 ] || [ $w -le 0 ]; then step=$((-step)); fi
    config "$w"
    if [ $((i % 30)) = 0 ]; then echo "$i $(rss)" >>"$RUN/rss.txt"; echo "  ${i}s: $(rss) KiB"; fi
    sleep 1
  done ) &
CHANGER=$!
RSS0=$(rss)
JS=$(taskset -c 1 oha -z "${SECS}s" -c 32 -q "$RATE" --no-tui --output-format json http://127.0.0.1:18200/)
wait "$CHANGER"
GENS=$(curl -s 127.0.0.1:18201/metrics | awk '/^siskin_router_config_generation/ {print $2}')
RSS_END=$(rss)
echo "$JS" >/tmp/siskin-soak-oha.json   # kept for a second look
SUMMARY=$(echo "$JS" | python3 -c '
import json, sys
d = json.load(sys.stdin)
codes = d.get("statusCodeDistribution", {})
errors = d.get("errorDistribution", {})
total = sum(codes.values())
bad = sum(n for c, n in codes.items() if not c.startswith("2"))
lat = d["latencyPercentiles"]
p50, p99 = lat["p50"] * 1e3, lat["p99"] * 1e3
print(f"{total} answers: status codes {json.dumps(codes)}, non-2xx {bad}; client-side errors {json.dumps(errors)}; p50 {p50:.2f} ms, p99 {p99:.2f} ms")
')
RSS_LINE=$(awk -v first="$RSS0" -v last="$RSS_END" '{a[NR]=$2; if (min==""||$2<min) min=$2; if ($2>max) max=$2} END {printf "RSS %d KiB at the start, %d KiB at the end; between %d and %d KiB over %d samples", first, last, min, max, NR}' "$RUN/rss.txt")
{
echo "Command: \`router/bench/soak.sh --minutes $MINUTES --rate $RATE\` ($(date -u +%Y-%m-%d)), siskin-router --workers 1, oha -c 32 open loop."
echo
echo "- $SUMMARY"
echo "- configuration generations: $GENS (one per weight change, plus the first)"
echo "- $RSS_LINE"
echo "- RSS samples, KiB every 30 s: $(awk '{print $2}' "$RUN/rss.txt" | tr '\n' ' ' | sed 's/ $//')"
} | tee "$RUN/result.md"

if [ "$WRITE" = 1 ]; then
  python3 - "$ROOT/docs/benchmarks.md" "$RUN/result.md" <<'PY'
import sys, re
doc, res = sys.argv[1], open(sys.argv[2]).read()
text = open(doc).read()
start, end = "<!-- soak:start -->", "<!-- soak:end -->"
text = re.sub(re.escape(start) + ".*?" + re.escape(end), start + "\n" + res + end, text, flags=re.S)
open(doc, "w").write(text)
PY
  echo "updated docs/benchmarks.md"
fi
