# Shared helpers for the set-up scripts. Source it; do not run it.
# Everything heavy is cached outside the repo under $LAKEHOUSE_CACHE_DIR, keyed by version.
set -euo pipefail
# With pipefail, a reader that stops early (`grep -q`, `grep -m1`, `head`, awk's `exit`) can kill
# the writer with SIGPIPE and fail the pipeline (exit 141) depending on timing: seen under load.
# Readers in these scripts read their whole input.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAKEHOUSE_CACHE_DIR="${LAKEHOUSE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lakehouse}"
export LAKEHOUSE_CACHE_DIR
UV_VERSION="0.13.9"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# The Go toolchain (PATH, else the usual /usr/local/go): its path, or die saying what needs it.
# Usage: go=$(find_go "building kustomize")
find_go() {
  local go
  go=$(command -v go 2>/dev/null || true)
  [ -n "$go" ] || { [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go; }
  [ -n "$go" ] || die "go not found: $1 needs Go 1.26 or newer on PATH."
  echo "$go"
}

require_python() {
  command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3.11 or newer."
  python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "Python $(python3 -c 'import platform; print(platform.python_version())') found; Python 3.11 or newer is required."
}

require_java() {
  command -v java >/dev/null 2>&1 || die "java not found: Spark ${SPARK_VERSION:-4} needs a Java 17 or 21 runtime (e.g. 'apt-get install openjdk-17-jdk-headless') with java on PATH or JAVA_HOME set."
  local v
  # awk reads to the end: exiting at the first match could kill java with SIGPIPE (pipefail)
  v=$(java -version 2>&1 | awk -F'"' '/version/ && !seen {print $2; seen = 1}')
  local major=${v%%.*}
  case "$major" in
    17|21) ;;
    *) die "Java $v found; Spark 4 needs Java 17 or 21 (install openjdk-17-jdk-headless or point JAVA_HOME at one)." ;;
  esac
}

require_maven() {
  command -v mvn >/dev/null 2>&1 || die "mvn not found: Maven resolves the pinned JVM jars (apt-get install maven)."
  # Route all Maven traffic to Maven's own default central repository (see jvm/maven-settings.xml).
  local builder
  builder=$(ls "$(dirname "$(readlink -f "$(command -v mvn)")")"/../lib/maven-model-builder-*.jar 2>/dev/null | sed -n 1p)
  [ -n "$builder" ] || die "cannot find maven-model-builder in the Maven installation to read its default repository."
  LAKEHOUSE_MAVEN_CENTRAL=$(unzip -p "$builder" org/apache/maven/model/pom-4.0.0.xml | grep -oP '(?<=<url>)[^<]+' | sed -n 1p)
  export LAKEHOUSE_MAVEN_CENTRAL
}

uv_bin() {
  local dir="$LAKEHOUSE_CACHE_DIR/uv/$UV_VERSION"
  if [ ! -x "$dir/bin/uv" ]; then
    say "installing uv $UV_VERSION into $dir"
    python3 -m pip install --quiet --disable-pip-version-check --target "$dir.tmp" "uv==$UV_VERSION" >&2
    rm -rf "$dir"; mv "$dir.tmp" "$dir"
  fi
  echo "$dir/bin/uv"
}
