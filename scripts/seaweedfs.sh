#!/usr/bin/env bash
# SeaweedFS `weed`, the S3-compatible server of the tests (lakehouse/testing/s3_server.py), cached
# outside the repo:
#   $LAKEHOUSE_CACHE_DIR/seaweedfs/<SEAWEEDFS_VERSION>/bin/weed
#       built with `go build` from the pinned Go module github.com/seaweedfs/seaweedfs (the build
#       module, with its go.sum, is tools/seaweedfs); static (cgo off), no debug info.
# The version comes from lakehouse/versions.py. The first build downloads ~440 modules and
# compiles for several minutes on 2 cores (see BUILD TIME); afterwards `install` only checks the
# cache (~0.03 s) and prints nothing.
#
# Usage: scripts/seaweedfs.sh install      build weed if it is missing (quiet when cached)
#        scripts/seaweedfs.sh --print-bin  print the path of the weed binary (builds nothing)
#        scripts/seaweedfs.sh --help
#
# BUILD TIME (measured on the project's 2-core dev VM, Go 1.26.8, weed 4.53 at 7506e5f91cd6):
#   downloading the modules from scratch  ~1 min 40 s
#   compiling and linking weed            7 min 3 s wall, 364 s CPU (empty Go build cache;
#                                         a Spark test run was sharing the two cores)
#   the binary                            157 MB, static (cgo off), no debug info
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

SEAWEEDFS_VERSION=$(sed -n 's/^SEAWEEDFS_VERSION *= *"\([^"]*\)".*/\1/p' "$REPO_ROOT/lakehouse/versions.py")
[ -n "$SEAWEEDFS_VERSION" ] || die "cannot read SEAWEEDFS_VERSION from lakehouse/versions.py"
MODULE=github.com/seaweedfs/seaweedfs
TOOLS_MOD="$REPO_ROOT/tools/seaweedfs"
SW_DIR="$LAKEHOUSE_CACHE_DIR/seaweedfs"
BIN_DIR="$SW_DIR/$SEAWEEDFS_VERSION/bin"
WEED="$BIN_DIR/weed"

# Bump when the build recipe below changes, so a cached binary is rebuilt.
BUILD_RECIPE="cgo=0 trimpath no-dwarf ldflags=-s,-w,commit r1"

usage() { sed -n '2,/^# shellcheck/{/^# shellcheck/d;s/^# \{0,1\}//p}' "$0"; }

# The stamp ties the cached binary to the exact build inputs (module graph + recipe); comments in
# go.mod do not count.
stamp_want() {
  { sed 's#//.*##' "$TOOLS_MOD/go.mod"; cat "$TOOLS_MOD/go.sum"; echo "$BUILD_RECIPE"; } \
    | sha256sum | cut -c1-16
}
installed() { [ -x "$WEED" ] && [ "$(cat "$BIN_DIR/.stamp" 2>/dev/null)" = "$(stamp_want)" ]; }

# versions.py and tools/seaweedfs/go.mod must agree: the go.mod is what gets built.
check_go_mod() {
  local have
  have=$(sed -E 's/^require[[:space:]]+//' "$TOOLS_MOD/go.mod" \
    | awk -v m="$MODULE" '$1 == m && $2 ~ /^v/ && !seen {print $2; seen = 1}')
  [ "$have" = "v$SEAWEEDFS_VERSION" ] \
    || die "tools/seaweedfs/go.mod requires $MODULE ${have:-(nothing)} but SEAWEEDFS_VERSION in lakehouse/versions.py is $SEAWEEDFS_VERSION: update both together ('go mod tidy' in tools/seaweedfs)."
}

build() {
  local go tmp t0 commit
  go=$(find_go "building SeaweedFS (weed)")
  mkdir -p "$SW_DIR"
  tmp=$(mktemp -d "$SW_DIR/.build.XXXXXX")
  # shellcheck disable=SC2064  # expand $tmp now: it is local to this function
  trap "rm -rf '$tmp'" EXIT
  # Static binary; no DWARF at all (-w drops it at link anyway, so skip generating it).
  export CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly -buildvcs=false -gcflags=all=-dwarf=false"
  say "Go: $("$go" version)"
  t0=$SECONDS
  say "downloading the Go modules of tools/seaweedfs ($MODULE v$SEAWEEDFS_VERSION)"
  (cd "$TOOLS_MOD" && "$go" mod download) || die "go mod download failed in tools/seaweedfs"
  say "modules ready in $((SECONDS - t0))s; building weed (5-10 minutes on 2 cores, once per version)"
  t0=$SECONDS
  # What upstream's release build stamps in: the commit (here the pseudo-version's short hash).
  commit=${SEAWEEDFS_VERSION##*-}
  (cd "$TOOLS_MOD" && "$go" build \
      -ldflags="-s -w -X $MODULE/weed/util/version.COMMIT=$commit" \
      -o "$tmp/weed" "$MODULE/weed") || die "building weed failed"
  "$tmp/weed" version >&2 || die "the built weed does not run"
  say "weed built in $((SECONDS - t0))s ($(du -h "$tmp/weed" | cut -f1))"
  stamp_want > "$tmp/.stamp"
  chmod 755 "$tmp"
  rm -rf "$BIN_DIR.old"
  [ -d "$BIN_DIR" ] && mv "$BIN_DIR" "$BIN_DIR.old"
  mkdir -p "$(dirname "$BIN_DIR")"
  mv "$tmp" "$BIN_DIR"
  rm -rf "$BIN_DIR.old"
  trap - EXIT
}

cmd_install() {
  [ $# -eq 0 ] || die "install takes no arguments (try --help)"
  check_go_mod
  installed && return 0
  mkdir -p "$SW_DIR"
  # One build at a time per cache; a second caller waits, then finds the work done.
  exec 9>"$SW_DIR/.lock"
  flock 9
  if ! installed; then
    local start=$SECONDS
    build
    say "SeaweedFS weed ready in $((SECONDS - start))s: $WEED"
  fi
  exec 9>&-
}

case "${1:-}" in
  install) shift; cmd_install "$@" ;;
  --print-bin) echo "$WEED" ;;
  -h|--help|help) usage ;;
  "") usage >&2; exit 2 ;;
  *) die "unknown command '$1' (try --help)" ;;
esac
