#!/usr/bin/env bash
# Runs every check and every test, installing what they need first. This is the README's
# test command and what CI runs (.ci/run). Safe to re-run; the control-plane build is cached.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
command -v go >/dev/null || { echo "Go >= 1.26 is required to build the test control plane"; exit 1; }
cargo --version
go version
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "generated CRDs are committed"
cargo run --quiet --locked -p siskin-api --bin crdgen -- --check
config/helm/sync-crds.sh --check

step "generated foreign types are committed (kopium, from ../shared/crds)"
scripts/foreign-types.sh --check

step "examples validate"
cargo run --quiet --locked -p siskin-operator --bin siskin -- validate examples/

step "test control plane (kube-apiserver + etcd, built once and cached)"
SISKIN_KUBE_BINS=$(e2e/controlplane/build.sh | tail -n 1)
export SISKIN_KUBE_BINS
ls -l "$SISKIN_KUBE_BINS"

step "install tools for the manifest and HTTP/2 tests (Helm, kustomize, h2spec; built once and cached)"
while IFS='=' read -r name path; do export "$name=$path"; done < <(scripts/tools.sh)
"$SISKIN_HELM" version --short
"$SISKIN_KUSTOMIZE" version
"$SISKIN_H2SPEC" --version
"$SISKIN_HELM" lint config/helm/siskin

step "Prometheus, openssl, curl and Chromium for the analysis, operator and dashboard tests (Debian packages)"
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! command -v openssl >/dev/null || ! command -v curl >/dev/null || ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  sudo=$(command -v sudo || true)
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus openssl curl ca-certificates chromium chromium-driver fonts-dejavu-core
fi
prometheus --version 2>&1 | sed -n 1p
chromium --version
chromedriver --version

step "tests"
cargo test --workspace --locked --no-fail-fast
