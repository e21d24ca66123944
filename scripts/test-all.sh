#!/usr/bin/env bash
# Runs every check and every test, installing what they need first. This is the README's
# test command and what CI runs (.ci/run). Safe to re-run; the Go-built tools are cached.
#
# On a fresh machine the Go builds (the test control plane, Helm, kustomize, h2spec) and the
# Debian packages are fetched and built in the background while the Rust code is linted and
# compiled: Rust builds leave a core idle for long stretches (one large crate, linking), and
# downloads need no CPU. Their output goes to a log folder, printed if one of them fails.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { printf '\n==> [%ds] %s\n' "$((SECONDS - started))" "$*"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
command -v go >/dev/null || { echo "Go >= 1.26 is required to build the test control plane"; exit 1; }
cargo --version
go version
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

step "format"
cargo fmt --all -- --check

logs=$(mktemp -d "${TMPDIR:-/tmp}/siskin-test-all.XXXX")
step "in the background: the test control plane, Helm, kustomize, h2spec and Debian packages (logs in $logs)"
packages() {
  # Prometheus (analysis and operator tests), openssl and curl, Chromium and ChromeDriver
  # (dashboard tests).
  if command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v openssl >/dev/null &&
    command -v curl >/dev/null && command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "all installed"
    return
  fi
  local sudo
  sudo=$(command -v sudo || true)
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus openssl curl ca-certificates chromium chromium-driver fonts-dejavu-core
}
e2e/controlplane/build.sh >"$logs/kube-bins.out" 2>"$logs/kube-bins.err" &
kube_job=$!
scripts/tools.sh >"$logs/tools.out" 2>"$logs/tools.err" &
tools_job=$!
packages >"$logs/packages.log" 2>&1 &
packages_job=$!
# Leave nothing running when a step fails.
trap 'kill $kube_job $tools_job $packages_job 2>/dev/null || true' EXIT
# finish JOB NAME LOG...: waits for a background job; on failure prints its logs and stops.
finish() {
  local job=$1 name=$2
  shift 2
  if ! wait "$job"; then
    echo "$name failed:"
    for f in "$@"; do echo "--- $f"; tail -n 60 "$f"; done
    exit 1
  fi
}

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build every test"
cargo test --workspace --locked --no-run

# The binaries the test build made are run as they are: `cargo run -p one-package` would
# resolve that package's features alone and compile part of the dependencies again.
bin=${CARGO_TARGET_DIR:-target}/debug

step "generated CRDs are committed"
"$bin/crdgen" --check
config/helm/sync-crds.sh --check

step "generated foreign types are committed (kopium, from ../shared/crds)"
scripts/foreign-types.sh --check

step "examples validate"
"$bin/siskin" validate examples/

step "test control plane (kube-apiserver + etcd, built once and cached)"
finish "$kube_job" "e2e/controlplane/build.sh" "$logs/kube-bins.err"
SISKIN_KUBE_BINS=$(tail -n 1 "$logs/kube-bins.out")
export SISKIN_KUBE_BINS
ls -l "$SISKIN_KUBE_BINS"

step "tools for the manifest and HTTP/2 tests (Helm, kustomize, h2spec; built once and cached)"
finish "$tools_job" "scripts/tools.sh" "$logs/tools.err"
while IFS='=' read -r name path; do export "$name=$path"; done <"$logs/tools.out"
"$SISKIN_HELM" version --short
"$SISKIN_KUSTOMIZE" version
"$SISKIN_H2SPEC" --version
"$SISKIN_HELM" lint config/helm/siskin

step "Debian packages: Prometheus, openssl, curl, Chromium"
finish "$packages_job" "apt-get" "$logs/packages.log"
prometheus --version 2>&1 | sed -n 1p
chromium --version
chromedriver --version

step "tests (scripts/run-tests.py: every test binary of the workspace, three at a time)"
SISKIN_TEST_JOBS=${SISKIN_TEST_JOBS:-3} scripts/run-tests.py

step "done"
