#!/usr/bin/env bash
# Builds the install tools the manifest tests use — Helm and kustomize, pinned — from the Go
# module proxy into a cache folder, once. Prints `NAME=PATH` lines for SISKIN_HELM and
# SISKIN_KUSTOMIZE, and h2spec (SISKIN_H2SPEC) for the router's HTTP/2 conformance test.
set -euo pipefail
root=${SISKIN_TOOLS_ROOT:-$HOME/.cache/siskin/tools}
build() { # name module version binary
  local dir="$root/$1-$3"
  if [ ! -x "$dir/$4" ]; then
    echo "building $1 $3 (once; cached in $dir)" >&2
    mkdir -p "$dir"
    (cd "$(mktemp -d)" && GOBIN="$dir" GOFLAGS=-mod=mod go install "$2@$3") >&2
  fi
  echo "$dir/$4"
}
echo "SISKIN_HELM=$(build helm helm.sh/helm/v3/cmd/helm v3.22.0 helm)"
echo "SISKIN_KUSTOMIZE=$(build kustomize sigs.k8s.io/kustomize/kustomize/v5 v5.7.1 kustomize)"
# h2spec tags v2 without a /v2 module path, so the Go proxy serves it as +incompatible.
echo "SISKIN_H2SPEC=$(build h2spec github.com/summerwind/h2spec/cmd/h2spec v2.2.1+incompatible h2spec)"
