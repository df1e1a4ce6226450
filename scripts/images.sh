#!/usr/bin/env bash
# The project's container images, built from the one Dockerfile without a Docker engine:
#
#   base      Debian bookworm (minbase) made with debootstrap from Debian's packages and
#             committed as localhost/lakehouse-debian:bookworm (BASE_IMAGE of the Dockerfile),
#             because no image registry is reachable here; once per recipe version
#   spark     Dockerfile target spark   -> lakehouse-spark:<tag>
#   prefect   Dockerfile target prefect -> lakehouse-prefect:<tag>
#   operator  tools/spark-operator/Containerfile: the spark image + the Spark operator binary
#             built by scripts/cluster-tools.sh -> lakehouse-spark-operator:<version>-<tag>
#   pause     the pods' sandbox: the pause program built by scripts/cluster-tools.sh, alone in an
#             image -> lakehouse-pause:<version>
#
# <tag> is `dev` unless LAKEHOUSE_IMAGE_TAG is set. The builder is buildah (Debian package
# `buildah`, daemonless; its storage lives in $LAKEHOUSE_CACHE_DIR/containers, so layers are
# cached between runs: a change to spark_jobs/ rebuilds only the last layers);
# LAKEHOUSE_IMAGE_BUILDER=docker uses `docker buildx build` with the same context, jars and
# arguments instead (then BASE_IMAGE stays the official debian image).
#
# Usage: scripts/images.sh [base|spark|prefect|operator|pause]...   build (default: spark)
#        scripts/images.sh --export NAME DIR    write image NAME as a docker-archive tar into DIR
#                                               (cached by image id) and print its path
#        scripts/images.sh --ref NAME           print the reference of image NAME
#        scripts/images.sh --inspect NAME       the image's configuration (JSON)
#        scripts/images.sh --run NAME CMD...    run CMD in a container of image NAME (buildah)
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

require_python
eval "$(python3 - <<'PY'
import runpy, shlex
v = runpy.run_path("lakehouse/versions.py")
for k in ("DEBIAN_SUITE", "SPARK_OPERATOR_VERSION", "PAUSE_VERSION", "JARS_KEY", "S3_JARS_KEY", "SPARK_VERSION",
          "DELTA_VERSION", "SCALA_BINARY_VERSION"):
    print(f"{k}={shlex.quote(v[k])}")
PY
)"

TAG="${LAKEHOUSE_IMAGE_TAG:-dev}"
BUILDER="${LAKEHOUSE_IMAGE_BUILDER:-buildah}"
STORE="$LAKEHOUSE_CACHE_DIR/containers"
BASE_REF="localhost/lakehouse-debian:$DEBIAN_SUITE"
# Bump when the base recipe below changes: the base image is rebuilt.
BASE_RECIPE="debootstrap-minbase-r1"
# The image carries both pinned jar sets (lakehouse/jars.py): Delta + Kafka connector, and the
# S3A connector for s3a:// storage. One build context of hard links to both, kept by key.
JARS_DIR="$LAKEHOUSE_CACHE_DIR/jars/image-$JARS_KEY+$S3_JARS_KEY"
image_jars() {
  [ -f "$JARS_DIR/.complete" ] && return 0
  local set
  for set in "$JARS_KEY" "$S3_JARS_KEY"; do
    [ -f "$LAKEHOUSE_CACHE_DIR/jars/$set/.complete" ] \
      || die "the pinned jars are not in $LAKEHOUSE_CACHE_DIR/jars/$set: run scripts/setup.sh first"
  done
  rm -rf "$JARS_DIR.tmp" && mkdir -p "$JARS_DIR.tmp"
  ln "$LAKEHOUSE_CACHE_DIR/jars/$JARS_KEY"/*.jar "$LAKEHOUSE_CACHE_DIR/jars/$S3_JARS_KEY"/*.jar "$JARS_DIR.tmp/"
  touch "$JARS_DIR.tmp/.complete"
  rm -rf "$JARS_DIR" && mv "$JARS_DIR.tmp" "$JARS_DIR"
}

ref() {
  case "$1" in
    base) echo "$BASE_REF" ;;
    spark) echo "localhost/lakehouse-spark:$TAG" ;;
    prefect) echo "localhost/lakehouse-prefect:$TAG" ;;
    operator) echo "localhost/lakehouse-spark-operator:$SPARK_OPERATOR_VERSION-$TAG" ;;
    pause) echo "localhost/lakehouse-pause:$PAUSE_VERSION" ;;
    *) die "unknown image '$1' (base, spark, prefect, operator, pause)" ;;
  esac
}

bah() { buildah --root "$STORE/storage" --runroot "$STORE/run" --storage-driver overlay "$@"; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }

# The Debian mirror this machine's apt uses (deb822 .sources or a one-line sources.list).
debian_mirror() {
  python3 - <<'PY'
import glob, re, sys
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")) + ["/etc/apt/sources.list"]:
    try:
        text = open(path).read()
    except OSError:
        continue
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
        if "debian-archive-keyring" in fields.get("Signed-By", "") or "/debian" in fields.get("URIs", ""):
            suites = fields.get("Suites", "").split()
            if any(not s.endswith("-security") for s in suites):
                print(fields["URIs"].split()[0]); sys.exit(0)
    for line in text.splitlines():
        m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
        if m and not m.group(2).endswith("-security"):
            print(m.group(1)); sys.exit(0)
sys.exit("no Debian mirror found in /etc/apt/sources.list{,.d/*.sources}")
PY
}

base_ok() {
  [ "$(bah inspect --type image --format '{{index .ImageAnnotations "lakehouse.recipe"}}' "$BASE_REF" 2>/dev/null)" = "$BASE_RECIPE" ]
}

build_base() {
  if base_ok; then say "base image $BASE_REF cached"; return; fi
  need debootstrap "install Debian's debootstrap (apt-get install debootstrap)"
  local mirror tmp ctr mnt t0=$SECONDS
  mirror=$(debian_mirror) || die "cannot tell which Debian mirror apt uses"
  mkdir -p "$STORE"
  tmp=$(mktemp -d "$STORE/.rootfs.XXXXXX")
  # shellcheck disable=SC2064  # expand $tmp now
  trap "rm -rf '$tmp'" EXIT
  say "debootstrap $DEBIAN_SUITE (minbase) for the base image (a few minutes, once)"
  debootstrap --variant=minbase --components=main "$DEBIAN_SUITE" "$tmp/rootfs" "$mirror" \
    > "$tmp/debootstrap.log" 2>&1 || { tail -n 20 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
  # apt inside the image uses the same Debian sources as this machine
  rm -f "$tmp/rootfs/etc/apt/sources.list"
  if compgen -G "/etc/apt/sources.list.d/debian*.sources" >/dev/null; then
    cp /etc/apt/sources.list.d/debian*.sources "$tmp/rootfs/etc/apt/sources.list.d/"
  else
    grep -E '^deb ' /etc/apt/sources.list > "$tmp/rootfs/etc/apt/sources.list"
  fi
  rm -rf "$tmp/rootfs/var/lib/apt/lists/"* "$tmp/rootfs/var/cache/apt/"*.bin "$tmp/rootfs/var/log/"*
  ctr=$(bah from scratch)
  mnt=$(bah mount "$ctr")
  cp -a "$tmp/rootfs/." "$mnt/"
  bah umount "$ctr" >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash --annotation "lakehouse.recipe=$BASE_RECIPE" "$ctr"
  bah commit --quiet --rm "$ctr" "$BASE_REF" >/dev/null
  rm -rf "$tmp"; trap - EXIT
  say "base image $BASE_REF built in $((SECONDS - t0))s"
}

# The CA bundle pip/uv need for TLS, when this machine's traffic goes through an intercepting
# proxy (PIP_CERT / SSL_CERT_FILE set): handed to the build as the secret `pip-ca`.
secret_args() {
  local ca="${PIP_CERT:-${SSL_CERT_FILE:-}}"
  if [ -n "$ca" ] && [ -s "$ca" ]; then echo "--secret=id=pip-ca,src=$ca"; fi
}

BUILT=" "
build_target() {  # spark | prefect
  local target=$1 t0=$SECONDS args=()
  case "$BUILT" in *" $target "*) return 0 ;; esac
  BUILT+="$target "
  image_jars
  args=(--target "$target" -t "$(ref "$target")" -f Dockerfile
        --build-context "jars=$JARS_DIR"
        --build-arg "SPARK_VERSION=$SPARK_VERSION" --build-arg "DELTA_VERSION=$DELTA_VERSION"
        --build-arg "SCALA_BINARY_VERSION=$SCALA_BINARY_VERSION" --build-arg "UV_VERSION=$UV_VERSION")
  # shellcheck disable=SC2207
  args+=($(secret_args))
  say "building image $(ref "$target") (Dockerfile target $target, $BUILDER)"
  if [ "$BUILDER" = docker ]; then
    docker buildx build "${args[@]}" --load . >&2
  else
    need buildah "install Debian's buildah (apt-get install buildah)"
    build_base
    bah bud --quiet --format docker --layers --isolation chroot --network host --pull=never \
      --build-arg "BASE_IMAGE=$BASE_REF" "${args[@]}" . >&2
  fi
  say "image $(ref "$target") built in $((SECONDS - t0))s"
}

build_operator() {
  local bin t0=$SECONDS
  bin=$(scripts/cluster-tools.sh --print-bin-dir)/spark-operator
  [ -x "$bin" ] || die "$bin is missing: run scripts/cluster-tools.sh first"
  build_target spark
  local ctx; ctx=$(mktemp -d); cp "$bin" "$ctx/spark-operator"
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" EXIT
  say "building image $(ref operator)"
  bah bud --quiet --format docker --layers --isolation chroot --pull=never --build-arg "SPARK_IMAGE=$(ref spark)" \
    -t "$(ref operator)" -f tools/spark-operator/Containerfile "$ctx" >&2
  rm -rf "$ctx"; trap - EXIT
  say "image $(ref operator) built in $((SECONDS - t0))s"
}

build_pause() {
  local bin ctr
  bin=$(scripts/cluster-tools.sh --print-bin-dir)/pause
  [ -x "$bin" ] || die "$bin is missing: run scripts/cluster-tools.sh first"
  if [ "$(bah inspect --type image --format '{{index .ImageAnnotations "lakehouse.source"}}' "$(ref pause)" 2>/dev/null)" = "$(sha256sum < "$bin" | cut -c1-16)" ]; then
    return 0
  fi
  ctr=$(bah from scratch)
  bah copy "$ctr" "$bin" /pause >/dev/null
  bah config --entrypoint '["/pause"]' --user 65535:65535 \
    --annotation "lakehouse.source=$(sha256sum < "$bin" | cut -c1-16)" "$ctr"
  bah commit --quiet --rm "$ctr" "$(ref pause)" >/dev/null
  say "image $(ref pause) built"
}

export_image() {  # NAME DIR
  local name=$1 dir=$2 id out
  id=$(bah inspect --type image --format '{{.FromImageID}}' "$(ref "$name")" 2>/dev/null) \
    || die "image $(ref "$name") is not built: run scripts/images.sh $name"
  out="$dir/$name-${id:0:16}.tar"
  if [ ! -s "$out" ]; then
    mkdir -p "$dir"
    rm -f "$dir/$name-"*.tar
    bah push --quiet "$(ref "$name")" "docker-archive:$out.tmp:$(ref "$name")" >&2
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

# Leave nothing mounted: buildah's working containers (a build that was interrupted leaves its
# own) and the storage's own overlay mount go when this script ends.
cleanup_store() {
  bah rm --all >/dev/null 2>&1 || true
  if mountpoint -q "$STORE/storage/overlay" 2>/dev/null; then umount "$STORE/storage/overlay" 2>/dev/null || true; fi
}

mkdir -p "$STORE"
case "${1:-}" in
  --ref) ref "${2:?image name}"; exit 0 ;;
  --inspect) bah inspect --type image "$(ref "${2:?image name}")"; exit 0 ;;
  --run)
    exec 9>"$STORE/.lock"; flock 9; trap cleanup_store EXIT
    name=${2:?image name}; shift 2
    ctr=$(bah from --pull=never --quiet "$(ref "$name")")
    bah run --isolation chroot "$ctr" -- "$@"
    exit $? ;;
  --export) exec 9>"$STORE/.lock"; flock 9; trap cleanup_store EXIT; export_image "${2:?image name}" "${3:?directory}"; exit 0 ;;
  -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
# One build at a time per store.
exec 9>"$STORE/.lock"
flock 9
trap cleanup_store EXIT
for name in "${@:-spark}"; do
  case "$name" in
    base) build_base ;;
    spark|prefect) build_target "$name" ;;
    operator) build_operator ;;
    pause) build_pause ;;
    *) die "unknown image '$name' (base, spark, prefect, operator, pause)" ;;
  esac
done
