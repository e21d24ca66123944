#!/usr/bin/env bash
# Regenerates the Rust types of the foreign resources Siskin writes or reads (Gateway API
# HTTPRoute and GRPCRoute, Istio, SMI, Consul) with kopium from the CRDs in ../shared/crds, into operator/foreign/src/.
#
#   scripts/foreign-types.sh           regenerate in place
#   scripts/foreign-types.sh --check   fail if the committed files are not what kopium generates
#                                      from the CRDs (CI)
#
# kopium is pinned and installed once into ${SISKIN_TOOLS_ROOT:-~/.cache/siskin/tools}.
# A regeneration records in operator/foreign/kopium.sha256 the SHA-256 of this script, every
# input CRD and every generated file. --check first compares those sums: when every one is
# the same, the committed files are byte for byte those of a generation this script made, and
# kopium is not needed (building it takes minutes on a fresh machine). Otherwise it regenerates
# into a temporary folder and compares, as before.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
version=0.24.1
root=${SISKIN_TOOLS_ROOT:-$HOME/.cache/siskin/tools}
kopium="$root/kopium-$version/bin/kopium"
crds=${SISKIN_SHARED:-$repo/../shared}/crds
[ -d "$crds" ] || { echo "foreign-types.sh: $crds is missing (set SISKIN_SHARED)" >&2; exit 1; }
stamp="$repo/operator/foreign/kopium.sha256"

# The CRD files read, and (below) the files written.
inputs=(
  gateway-api/gateway.networking.k8s.io_httproutes.yaml
  gateway-api/gateway.networking.k8s.io_grpcroutes.yaml
  istio/virtualservices.networking.istio.io.yaml
  istio/destinationrules.networking.istio.io.yaml
  smi/linkerd-smi_trafficsplit-crd.yaml
  smi/smi-sdk-go_split.yaml
  consul/consul.hashicorp.com_servicesplitters.yaml
  consul/consul.hashicorp.com_servicerouters.yaml
  consul/consul.hashicorp.com_servicedefaults.yaml
)
# sums: the stamp's lines for this script, the inputs and the committed generated files.
sums() {
  (cd "$repo" && sha256sum scripts/foreign-types.sh)
  (cd "$crds" && sha256sum "${inputs[@]}" | sed 's#  #  crds/#')
  (cd "$repo" && find operator/foreign/src -name '*.rs' -path '*/*/*/*/*' | sort | xargs sha256sum)
}

if [ "${1:-}" = "--check" ] && [ -f "$stamp" ] && diff -q <(sums) "$stamp" >/dev/null; then
  echo "operator/foreign/src: this script, the CRDs and the generated files match $stamp (kopium $version's last run)"
  exit 0
fi
if [ ! -x "$kopium" ]; then
  echo "installing kopium $version (once; cached in $root/kopium-$version)" >&2
  cargo install --quiet --locked kopium --version "$version" --root "$root/kopium-$version" >&2
fi

out="$repo/operator/foreign/src"
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
fi

# generate FILE(relative to crds) VERSION DEST(relative to src)
generate() {
  mkdir -p "$(dirname "$out/$3")"
  # Relative path, so the command line in the header is the same on every machine.
  (cd "$crds" && "$kopium" -f "$1" --api-version "$2" \
      --derive Default --derive PartialEq --smart-derive-elision) |
    rustfmt --edition 2024 --config-path "$repo/rustfmt.toml" --emit stdout >"$out/$3.tmp"
  mv "$out/$3.tmp" "$out/$3"
}

generate gateway-api/gateway.networking.k8s.io_httproutes.yaml v1 gateway/httproutes.rs
generate gateway-api/gateway.networking.k8s.io_grpcroutes.yaml v1 gateway/grpcroutes.rs
generate istio/virtualservices.networking.istio.io.yaml v1beta1 istio/virtualservices.rs
generate istio/destinationrules.networking.istio.io.yaml v1beta1 istio/destinationrules.rs
generate smi/linkerd-smi_trafficsplit-crd.yaml v1alpha1 smi/v1alpha1.rs
generate smi/linkerd-smi_trafficsplit-crd.yaml v1alpha2 smi/v1alpha2.rs
generate smi/smi-sdk-go_split.yaml v1alpha3 smi/v1alpha3.rs
generate consul/consul.hashicorp.com_servicesplitters.yaml v1alpha1 consul/servicesplitters.rs
generate consul/consul.hashicorp.com_servicerouters.yaml v1alpha1 consul/servicerouters.rs
generate consul/consul.hashicorp.com_servicedefaults.yaml v1alpha1 consul/servicedefaults.rs

if [ "${1:-}" = "--check" ]; then
  status=0
  for f in $(cd "$out" && find . -name '*.rs' | sort); do
    if ! diff -u "$repo/operator/foreign/src/$f" "$out/$f"; then
      echo "operator/foreign/src/$f is not what kopium generates: run scripts/foreign-types.sh" >&2
      status=1
    fi
  done
  rm -rf "$out"
  if [ $status = 0 ] && ! diff -q <(sums) "$stamp" >/dev/null 2>&1; then
    echo "the generated files are what kopium generates, but $stamp is out of date: run scripts/foreign-types.sh" >&2
    status=1
  fi
  exit $status
fi
sums >"$stamp"
