#!/usr/bin/env bash
# Copies the generated CRDs from config/crd/ (the source of truth, written by
# `cargo run -p siskin-api --bin crdgen`) into the Helm chart's files/crds/.
# Run it after regenerating the CRDs. With --check, changes nothing and exits 1 when the
# chart's copies differ (for CI).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/config/crd"
dst="$root/config/helm/siskin/files/crds"
check=false
[[ "${1:-}" == "--check" ]] && check=true

status=0
mkdir -p "$dst"
for f in "$src"/*.yaml; do
  name="$(basename "$f")"
  [[ "$name" == kustomization.yaml ]] && continue
  if $check; then
    if ! cmp -s "$f" "$dst/$name"; then
      echo "config/helm/siskin/files/crds/$name differs from config/crd/$name; run config/helm/sync-crds.sh" >&2
      status=1
    fi
  else
    cp "$f" "$dst/$name"
    echo "copied config/crd/$name"
  fi
done
# Copies whose source is gone.
for f in "$dst"/*.yaml; do
  [[ -e "$f" ]] || continue
  name="$(basename "$f")"
  if [[ ! -e "$src/$name" ]]; then
    if $check; then
      echo "config/helm/siskin/files/crds/$name has no source in config/crd/" >&2
      status=1
    else
      rm "$f"
      echo "removed $name"
    fi
  fi
done
exit $status
