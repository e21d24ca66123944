#!/usr/bin/env bash
# Builds kube-apiserver and etcd for Siskin's test control plane from the Go module proxy,
# once, into a cache folder keyed by version. Prints the folder on stdout (last line).
#
#   e2e/controlplane/build.sh            build if missing, print the bin dir
#   e2e/controlplane/build.sh --regen    re-derive the staging replace lines, go mod tidy
#
# Cache: ${SISKIN_KUBE_BINS_ROOT:-$HOME/.cache/siskin/kube-bins}/k8s-<ver>_etcd-<ver>/
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

modver() { sed -nE "s#^[[:space:]]*(require[[:space:]]+)?$2[[:space:]]+(v[^[:space:]]+).*#\\2#p" "$1" | head -n1; }
k8s=$(modver "$here/kube-apiserver/go.mod" k8s.io/kubernetes)
etcd=$(modver "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)
[ -n "$k8s" ] && [ -n "$etcd" ] || { echo "build.sh: cannot read versions from go.mod" >&2; exit 1; }
stg="v0.${k8s#v1.}"
minor=$(echo "$k8s" | cut -d. -f2)

if [ "${1:-}" = "--regen" ]; then
  gomod=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@$k8s" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  cd "$here/kube-apiserver"
  grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' |
    while read -r m; do go mod edit -replace="$m=$m@$stg"; done
  go mod tidy
  (cd "$here/etcd" && go mod tidy)
  exit 0
fi

root=${SISKIN_KUBE_BINS_ROOT:-$HOME/.cache/siskin/kube-bins}
out="$root/k8s-${k8s}_etcd-${etcd}"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: Go is required to build the test control plane" >&2; exit 1; }
mkdir -p "$out.tmp"
log="$out.tmp/build.log"
echo "building kube-apiserver $k8s and etcd $etcd into $out (cold build: see docs/testing.md)" >&2
start=$(date +%s)
# GNU time records peak memory for docs/testing.md when it is installed; the build does not need it.
timer=""; [ -x /usr/bin/time ] && timer="/usr/bin/time -v"
(
  cd "$here/etcd"
  $timer go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" . 2>>"$log.etcd.time"
  cd "$here/kube-apiserver"
  $timer go build -trimpath -tags selinux,notest,grpcnotrace \
    -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$k8s \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=$minor \
      -X k8s.io/component-base/version.gitTreeState=clean \
      -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z" \
    -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver 2>>"$log.apiserver.time"
) >&2 || { echo "build.sh: build failed; see $out.tmp/*.time" >&2; tail -30 "$log".*.time >&2; exit 1; }
echo "built in $(( $(date +%s) - start ))s" >&2
"$out.tmp/kube-apiserver" --version >&2
# sed, not head: head ends the pipe early and etcd's SIGPIPE fails the build under pipefail.
"$out.tmp/etcd" --version | sed -n 1p >&2
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"
