#!/usr/bin/env bash
# The rest of the test cluster's programs (scripts/cluster.sh), next to what scripts/k8s-tools.sh
# builds (etcd and the Kubernetes commands), cached outside the repo:
#   $LAKEHOUSE_CACHE_DIR/k8s/cluster-tools-<key>/bin/
#     spark-operator  the Kubeflow Spark operator (controller + webhook), `go build` from
#                     github.com/kubeflow/spark-operator/v2 (build module tools/spark-operator)
#     helm            helm.sh/helm/v3 at the version the operator's own go.mod requires; only
#                     `helm template` is used: the operator's chart rendered with
#                     spark-operator/values.yaml
#     coredns         CoreDNS from github.com/coredns/coredns with the cluster's plugins
#                     (build module tools/coredns)
#     pause           the sandbox ("pause") process of every pod, compiled from the upstream
#                     source in the k8s.io/kubernetes module (build/pause/linux/pause.c)
#   $LAKEHOUSE_CACHE_DIR/k8s/cluster-tools-<key>/chart/   the operator's Helm chart, as shipped in
#                     its module (all three CRDs under chart/crds)
# <key> covers the versions in lakehouse/versions.py, the build modules' go.mod/go.sum and the
# recipe below. Idempotent: a second run only checks the cache.
#
# Usage: scripts/cluster-tools.sh                  build what is missing, print the bin dir
#        scripts/cluster-tools.sh --print-bin-dir  print the bin dir only (builds nothing)
#        scripts/cluster-tools.sh --print-chart-dir
#        scripts/cluster-tools.sh --check          exit 0 when everything is cached
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

require_python
eval "$(python3 - <<'PY'
import runpy, shlex
v = runpy.run_path("lakehouse/versions.py")
for k in ("KUBERNETES_VERSION", "SPARK_OPERATOR_VERSION", "SPARK_OPERATOR_MODULE_SUM",
          "COREDNS_VERSION", "PAUSE_VERSION", "HELM_VERSION"):
    print(f"{k}={shlex.quote(v[k])}")
PY
)"

# Bump when the build recipe below changes, so cached programs are rebuilt.
BUILD_RECIPE="cgo=0 trimpath no-dwarf ldflags=-s,-w pause=gcc-static r1"
OP_MOD="$REPO_ROOT/tools/spark-operator"
DNS_MOD="$REPO_ROOT/tools/coredns"
K8S_MOD="$REPO_ROOT/tools/k8s"
OPERATOR_MODULE=github.com/kubeflow/spark-operator/v2

key() {
  { echo "$KUBERNETES_VERSION $SPARK_OPERATOR_VERSION $COREDNS_VERSION $PAUSE_VERSION $HELM_VERSION"
    for m in "$OP_MOD" "$DNS_MOD"; do sed 's#//.*##' "$m/go.mod"; cat "$m/go.sum" "$m"/*.go 2>/dev/null; done
    echo "$BUILD_RECIPE"; } | sha256sum | cut -c1-12
}
DIR="$LAKEHOUSE_CACHE_DIR/k8s/cluster-tools-$(key)"
BIN_DIR="$DIR/bin"
CHART_DIR="$DIR/chart"
PROGRAMS=(spark-operator helm coredns pause)

ok() {
  local p
  for p in "${PROGRAMS[@]}"; do [ -x "$BIN_DIR/$p" ] || return 1; done
  [ -s "$CHART_DIR/Chart.yaml" ] && [ -s "$CHART_DIR/crds/sparkoperator.k8s.io_sparkconnects.yaml" ]
}

case "${1:-}" in
  "") ;;
  --print-bin-dir) echo "$BIN_DIR"; exit 0 ;;
  --print-chart-dir) echo "$CHART_DIR"; exit 0 ;;
  --check) ok && exit 0; exit 1 ;;
  -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
  *) die "unknown option '$1' (try --help)" ;;
esac

go=$(find_go "building the Spark operator, helm and CoreDNS")

mod_version() { sed -E 's/^require[[:space:]]+//' "$1/go.mod" | awk -v m="$2" '$1 == m && $2 ~ /^v/ && !seen {print $2; seen = 1}'; }
check_mods() {
  [ "$(mod_version "$OP_MOD" "$OPERATOR_MODULE")" = "v$SPARK_OPERATOR_VERSION" ] \
    || die "tools/spark-operator/go.mod does not require $OPERATOR_MODULE v$SPARK_OPERATOR_VERSION (SPARK_OPERATOR_VERSION)"
  [ "$(mod_version "$OP_MOD" helm.sh/helm/v3)" = "v$HELM_VERSION" ] \
    || die "tools/spark-operator/go.mod does not require helm.sh/helm/v3 v$HELM_VERSION (HELM_VERSION)"
  [ "$(mod_version "$DNS_MOD" github.com/coredns/coredns)" = "v$COREDNS_VERSION" ] \
    || die "tools/coredns/go.mod does not require github.com/coredns/coredns v$COREDNS_VERSION (COREDNS_VERSION)"
}

module_dir() {  # MODULE_DIR MODULE -> the module's extracted, checksum-verified source
  (cd "$1" && "$go" mod download -json "$2") \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

build() {
  check_mods
  local tmp t0 opdir kdir sum
  mkdir -p "$LAKEHOUSE_CACHE_DIR/k8s"
  tmp=$(mktemp -d "$LAKEHOUSE_CACHE_DIR/k8s/.cluster-tools.XXXXXX")
  # shellcheck disable=SC2064  # expand $tmp now
  trap "rm -rf '$tmp'" EXIT
  mkdir -p "$tmp/bin"
  export CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly -buildvcs=false -gcflags=all=-dwarf=false"

  t0=$SECONDS
  say "downloading the Go modules of tools/spark-operator and tools/coredns"
  (cd "$OP_MOD" && "$go" mod download) || die "go mod download failed in tools/spark-operator"
  (cd "$DNS_MOD" && "$go" mod download) || die "go mod download failed in tools/coredns"
  sum=$(cd "$OP_MOD" && "$go" mod download -json "$OPERATOR_MODULE" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Sum"])')
  [ "$sum" = "$SPARK_OPERATOR_MODULE_SUM" ] \
    || die "$OPERATOR_MODULE@v$SPARK_OPERATOR_VERSION has hash $sum, but SPARK_OPERATOR_MODULE_SUM in lakehouse/versions.py is $SPARK_OPERATOR_MODULE_SUM"
  say "modules ready in $((SECONDS - t0))s"

  t0=$SECONDS
  say "building spark-operator v$SPARK_OPERATOR_VERSION and helm v$HELM_VERSION (10-15 minutes on 2 cores, once per version)"
  (cd "$OP_MOD" && "$go" build -o "$tmp/bin/" \
      -ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$SPARK_OPERATOR_VERSION -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
      "$OPERATOR_MODULE/cmd/operator" helm.sh/helm/v3/cmd/helm) || die "building spark-operator and helm failed"
  mv "$tmp/bin/operator" "$tmp/bin/spark-operator"
  say "spark-operator and helm built in $((SECONDS - t0))s"

  t0=$SECONDS
  say "building CoreDNS v$COREDNS_VERSION (a few minutes, once per version)"
  (cd "$DNS_MOD" && "$go" build -ldflags="-s -w" -o "$tmp/bin/coredns" .) || die "building CoreDNS failed"
  say "CoreDNS built in $((SECONDS - t0))s"

  command -v gcc >/dev/null 2>&1 || die "gcc not found: the pause program is compiled from C (apt-get install gcc libc6-dev)"
  kdir=$(module_dir "$K8S_MOD" k8s.io/kubernetes) || die "cannot find the k8s.io/kubernetes module source"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION" -o "$tmp/bin/pause" "$kdir/build/pause/linux/pause.c" \
    || die "compiling pause failed"

  opdir=$(module_dir "$OP_MOD" "$OPERATOR_MODULE") || die "cannot find the operator module source"
  cp -r "$opdir/charts/spark-operator-chart" "$tmp/chart"
  chmod -R u+w "$tmp/chart"

  "$tmp/bin/spark-operator" version >/dev/null 2>&1 || "$tmp/bin/spark-operator" --help >/dev/null \
    || die "the built spark-operator does not run"
  "$tmp/bin/helm" version --short >&2 || die "the built helm does not run"
  "$tmp/bin/coredns" -version >&2 || die "the built coredns does not run"
  chmod 755 "$tmp"
  rm -rf "$DIR"
  mv "$tmp" "$DIR"
  trap - EXIT
}

mkdir -p "$LAKEHOUSE_CACHE_DIR/k8s"
exec 9>"$LAKEHOUSE_CACHE_DIR/k8s/.cluster-tools.lock"
flock 9
start=$SECONDS
if ok; then
  say "cluster tools cached in $DIR"
else
  build
  say "cluster tools ready in $((SECONDS - start))s ($DIR)"
fi
echo "$BIN_DIR"
