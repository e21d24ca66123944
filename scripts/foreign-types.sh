#!/usr/bin/env bash
# Regenerates the Rust types of the foreign resources Siskin writes or reads (Gateway API
# HTTPRoute and GRPCRoute, Istio, SMI, Consul) with kopium from the CRDs in ../shared/crds, into operator/foreign/src/.
#
#   scripts/foreign-types.sh           regenerate in place
#   scripts/foreign-types.sh --check   regenerate into a temporary folder and fail if the
#                                      committed files differ (CI)
#
# kopium is pinned and installed once into ${SISKIN_TOOLS_ROOT:-~/.cache/siskin/tools}.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
version=0.24.1
root=${SISKIN_TOOLS_ROOT:-$HOME/.cache/siskin/tools}
kopium="$root/kopium-$version/bin/kopium"
if [ ! -x "$kopium" ]; then
  echo "installing kopium $version (once; cached in $root/kopium-$version)" >&2
  cargo install --quiet --locked kopium --version "$version" --root "$root/kopium-$version" >&2
fi
crds=${SISKIN_SHARED:-$repo/../shared}/crds
[ -d "$crds" ] || { echo "foreign-types.sh: $crds is missing (set SISKIN_SHARED)" >&2; exit 1; }

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
  exit $status
fi
