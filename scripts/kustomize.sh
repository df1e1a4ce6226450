#!/usr/bin/env bash
# kustomize for the manifest tests (tests/deploy), built from its Go module and cached:
#   $LAKEHOUSE_CACHE_DIR/k8s/kustomize-<version>/kustomize
# The version and the module graph are pinned by tools/kustomize/go.mod and go.sum.
#
# Usage: scripts/kustomize.sh           build when missing, then print the binary's path
#        scripts/kustomize.sh --print   print the path only (builds nothing)
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

MOD="$REPO_ROOT/tools/kustomize"
VERSION=$(awk '$1 == "sigs.k8s.io/kustomize/kustomize/v5" && $2 ~ /^v/ {print $2; exit}' "$MOD/go.mod")
[ -n "$VERSION" ] || die "tools/kustomize/go.mod does not require sigs.k8s.io/kustomize/kustomize/v5"
DIR="$LAKEHOUSE_CACHE_DIR/k8s/kustomize-$VERSION"
BIN="$DIR/kustomize"
stamp_want() { { sed 's#//.*##' "$MOD/go.mod"; cat "$MOD/go.sum"; } | sha256sum | cut -c1-16; }

if [ "${1:-}" = "--print" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$LAKEHOUSE_CACHE_DIR/k8s"
exec 9>"$LAKEHOUSE_CACHE_DIR/k8s/.kustomize.lock"
flock 9
if [ -x "$BIN" ] && [ "$(cat "$DIR/.stamp" 2>/dev/null)" = "$(stamp_want)" ]; then
  echo "$BIN"; exit 0
fi
go=$(find_go "building kustomize $VERSION")
say "building kustomize $VERSION from its Go module (about a minute)"
tmp=$(mktemp -d "$LAKEHOUSE_CACHE_DIR/k8s/.kustomize.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$MOD" && CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly -buildvcs=false" \
  "$go" build -ldflags="-s -w" -o "$tmp/kustomize" sigs.k8s.io/kustomize/kustomize/v5) \
  || die "building kustomize failed"
"$tmp/kustomize" version >/dev/null || die "the built kustomize does not run"
stamp_want > "$tmp/.stamp"
rm -rf "$DIR"; mv "$tmp" "$DIR"; chmod 755 "$DIR"
trap - EXIT
echo "$BIN"
