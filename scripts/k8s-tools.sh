#!/usr/bin/env bash
# Tools of the test Kubernetes cluster (tests/fixtures/k8s.py, scripts/cluster.sh), cached
# outside the repo:
#   $LAKEHOUSE_CACHE_DIR/k8s/kubernetes-<K>_etcd-<E>/bin/{etcd,kube-apiserver,
#       kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl}
#       built with `go build` from the pinned Go modules k8s.io/kubernetes and
#       go.etcd.io/etcd/server/v3 (the build module, with its go.sum, is tools/k8s); the
#       Kubernetes commands are built by one `go build`, so the packages they share compile once;
#   $LAKEHOUSE_CACHE_DIR/k8s/spark-operator-<S>/crds/*.yaml
#       the SparkApplication and ScheduledSparkApplication CRDs, copied unchanged from the
#       Go module github.com/kubeflow/spark-operator/v2 at the pinned release.
# Versions come from lakehouse/versions.py. Idempotent: a second run only checks the cache.
#
# Usage: scripts/k8s-tools.sh              build/copy what is missing, then print the bin dir
#        scripts/k8s-tools.sh --print-dir      print the bin dir only (builds nothing)
#        scripts/k8s-tools.sh --print-crd-dir  print the CRD dir only (builds nothing)
#        scripts/k8s-tools.sh --check          exit 0 when everything is cached, 1 otherwise
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

mode=build
case "${1:-}" in
  "") ;;
  --print-dir) mode=print-dir ;;
  --print-crd-dir) mode=print-crd-dir ;;
  --check) mode=check ;;
  -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
  *) die "unknown option '$1' (try --help)" ;;
esac

require_python
eval "$(python3 - <<'PY'
import runpy, shlex
v = runpy.run_path("lakehouse/versions.py")
for k in ("KUBERNETES_VERSION", "ETCD_VERSION", "SPARK_OPERATOR_VERSION",
          "SPARK_OPERATOR_MODULE_SUM", "K8S_TOOLS_KEY"):
    print(f"{k}={shlex.quote(v[k])}")
PY
)"

K8S_DIR="$LAKEHOUSE_CACHE_DIR/k8s"
BIN_DIR="$K8S_DIR/$K8S_TOOLS_KEY/bin"
CRD_DIR="$K8S_DIR/spark-operator-$SPARK_OPERATOR_VERSION/crds"
TOOLS_MOD="$REPO_ROOT/tools/k8s"
OPERATOR_MODULE="github.com/kubeflow/spark-operator/v2"
CRD_FILES=(sparkoperator.k8s.io_sparkapplications.yaml sparkoperator.k8s.io_scheduledsparkapplications.yaml)

# Bump when the build recipe below changes, so cached binaries are rebuilt.
BUILD_RECIPE="cgo=0 trimpath no-dwarf ldflags=-s,-w,version-stamp one-build r4"
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
# The stamp ties the cached binaries to the exact build inputs (module graph + recipe);
# comments in go.mod do not count.
stamp_want() {
  { sed 's#//.*##' "$TOOLS_MOD/go.mod"; cat "$TOOLS_MOD/go.sum"; echo "$BUILD_RECIPE"; } \
    | sha256sum | cut -c1-16
}
bins_ok() {
  local c
  for c in etcd "${KUBE_CMDS[@]}"; do [ -x "$BIN_DIR/$c" ] || return 1; done
  [ "$(cat "$BIN_DIR/.stamp" 2>/dev/null)" = "$(stamp_want)" ]
}
crds_ok() {
  local f
  for f in "${CRD_FILES[@]}"; do [ -s "$CRD_DIR/$f" ] || return 1; done
}

case "$mode" in
  print-dir) echo "$BIN_DIR"; exit 0 ;;
  print-crd-dir) echo "$CRD_DIR"; exit 0 ;;
  check) bins_ok && crds_ok && exit 0; exit 1 ;;
esac

# versions.py and tools/k8s/go.mod must agree: the go.mod is what gets built.
check_go_mod() {
  local kube etcd want_staging bad
  kube=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$TOOLS_MOD/go.mod")
  etcd=$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' "$TOOLS_MOD/go.mod")
  [ "$kube" = "v$KUBERNETES_VERSION" ] \
    || die "tools/k8s/go.mod requires k8s.io/kubernetes $kube but KUBERNETES_VERSION is $KUBERNETES_VERSION: update both together (and the replace block), then 'go mod tidy' in tools/k8s."
  [ "$etcd" = "v$ETCD_VERSION" ] \
    || die "tools/k8s/go.mod resolves go.etcd.io/etcd/server/v3 $etcd but ETCD_VERSION is $ETCD_VERSION: use the etcd version k8s.io/kubernetes v$KUBERNETES_VERSION requires."
  want_staging="v0.${KUBERNETES_VERSION#*.}"
  bad=$(awk -v w="$want_staging" '$1 ~ /^k8s\.io\// && $2 == "=>" && $4 != w {print $1}' "$TOOLS_MOD/go.mod")
  [ -z "$bad" ] || die "tools/k8s/go.mod replaces staging modules at a version other than $want_staging: $bad"
}

build_bins() {
  local go tmp t0 ldflags kv kmaj kmin build_date
  go=$(find_go "building kube-apiserver and etcd")
  check_go_mod
  mkdir -p "$K8S_DIR"
  tmp=$(mktemp -d "$K8S_DIR/.build.XXXXXX")
  # shellcheck disable=SC2064  # expand $tmp now: it is local to this function
  trap "rm -rf '$tmp'" EXIT
  kv="v$KUBERNETES_VERSION"; kmaj=${KUBERNETES_VERSION%%.*}; kmin=${KUBERNETES_VERSION#*.}; kmin=${kmin%%.*}
  # What the upstream build stamps in (hack/lib/version.sh), so /version reports the release.
  # Static binaries; no DWARF at all (-w drops it at link anyway, so skip generating it: ~12%
  # less compile CPU).
  export CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly -buildvcs=false -gcflags=all=-dwarf=false"
  say "Go: $("$go" version)"
  t0=$SECONDS
  say "downloading the Go modules of tools/k8s (kubernetes $kv, etcd v$ETCD_VERSION)"
  (cd "$TOOLS_MOD" && "$go" mod download) || die "go mod download failed in tools/k8s"
  # The release's commit time (from the module's .info) as build date: reproducible binaries.
  build_date=$(cd "$TOOLS_MOD" && "$go" mod download -json k8s.io/kubernetes \
    | python3 -c 'import json,sys; print(json.load(open(json.load(sys.stdin)["Info"]))["Time"])') \
    || die "cannot read the k8s.io/kubernetes module info"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$kv -X $pkg.gitMajor=$kmaj -X $pkg.gitMinor=$kmin"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit= -X $pkg.buildDate=$build_date"
  done
  say "modules ready in $((SECONDS - t0))s; building ${KUBE_CMDS[*]} $kv (10-20 minutes on 2 cores, once per version)"
  t0=$SECONDS
  local pkgs=() c
  for c in "${KUBE_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (cd "$TOOLS_MOD" && "$go" build -ldflags="$ldflags" -o "$tmp/" "${pkgs[@]}") \
    || die "building the Kubernetes commands failed"
  say "Kubernetes commands built in $((SECONDS - t0))s; building etcd v$ETCD_VERSION"
  t0=$SECONDS
  (cd "$TOOLS_MOD" && "$go" build -ldflags="-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3) \
    || die "building etcd failed"
  say "etcd built in $((SECONDS - t0))s"
  for c in "${KUBE_CMDS[@]}"; do
    if [ "$c" = kubectl ]; then "$tmp/$c" version --client >&2; else "$tmp/$c" --version >&2; fi \
      || die "the built $c does not run"
  done
  "$tmp/etcd" --version >&2 || die "the built etcd does not run"
  stamp_want > "$tmp/.stamp"
  chmod 755 "$tmp"
  rm -rf "$BIN_DIR.old"
  [ -d "$BIN_DIR" ] && mv "$BIN_DIR" "$BIN_DIR.old"
  mkdir -p "$(dirname "$BIN_DIR")"
  mv "$tmp" "$BIN_DIR"
  rm -rf "$BIN_DIR.old"
  trap - EXIT
}

copy_crds() {
  local go tmp json dir sum f src
  go=$(find_go "building kube-apiserver and etcd")
  mkdir -p "$K8S_DIR"
  tmp=$(mktemp -d "$K8S_DIR/.crds.XXXXXX")
  # shellcheck disable=SC2064  # expand $tmp now: it is local to this function
  trap "rm -rf '$tmp'" EXIT
  say "downloading the Go module $OPERATOR_MODULE@v$SPARK_OPERATOR_VERSION for its CRDs"
  # Outside any module: a plain, checksum-verified module download.
  json=$(cd "$tmp" && GOFLAGS='' "$go" mod download -json "$OPERATOR_MODULE@v$SPARK_OPERATOR_VERSION") \
    || die "go mod download $OPERATOR_MODULE@v$SPARK_OPERATOR_VERSION failed: $json"
  read -r dir sum < <(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["Dir"], d["Sum"])' <<<"$json")
  [ "$sum" = "$SPARK_OPERATOR_MODULE_SUM" ] \
    || die "$OPERATOR_MODULE@v$SPARK_OPERATOR_VERSION has hash $sum, but SPARK_OPERATOR_MODULE_SUM in lakehouse/versions.py is $SPARK_OPERATOR_MODULE_SUM"
  mkdir -p "$tmp/crds"
  for f in "${CRD_FILES[@]}"; do
    src="$dir/charts/spark-operator-chart/crds/$f"
    [ -s "$src" ] || src="$dir/config/crd/bases/$f"
    [ -s "$src" ] || die "$f is not in $OPERATOR_MODULE@v$SPARK_OPERATOR_VERSION (looked in charts/spark-operator-chart/crds and config/crd/bases)"
    cp "$src" "$tmp/crds/$f"
    chmod u+w "$tmp/crds/$f"
  done
  printf 'module %s\nversion v%s\nsum %s\nfrom %s\n' \
    "$OPERATOR_MODULE" "$SPARK_OPERATOR_VERSION" "$sum" "charts/spark-operator-chart/crds" > "$tmp/crds/SOURCE"
  chmod 755 "$tmp/crds"
  rm -rf "$CRD_DIR"
  mkdir -p "$(dirname "$CRD_DIR")"
  mv "$tmp/crds" "$CRD_DIR"
  rm -rf "$tmp"
  trap - EXIT
}

mkdir -p "$K8S_DIR"
# One build at a time per cache (parallel test runs may call this together).
exec 9>"$K8S_DIR/.lock"
flock 9

start=$SECONDS
if bins_ok; then
  say "kube-apiserver v$KUBERNETES_VERSION and etcd v$ETCD_VERSION cached in $BIN_DIR"
else
  build_bins
fi
if crds_ok; then
  say "Spark operator v$SPARK_OPERATOR_VERSION CRDs cached in $CRD_DIR"
else
  copy_crds
fi
say "k8s test tools ready in $((SECONDS - start))s (bin: $BIN_DIR, crds: $CRD_DIR)"
echo "$BIN_DIR"
