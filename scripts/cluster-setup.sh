#!/usr/bin/env bash
# Debian packages the test cluster (scripts/cluster.sh) and the image builds (scripts/images.sh)
# need: containerd + runc (the container runtime), the CNI plugins (pod network), buildah and
# debootstrap (images without a Docker engine or registry), iptables/conntrack (kube-proxy),
# socat (the API server's loopback door), gcc (the pause program). Installs only what is missing;
# no service is enabled or started (scripts/cluster.sh runs containerd itself, in its namespace).
source "$(dirname "$0")/lib.sh"
PACKAGES=(containerd runc containernetworking-plugins buildah debootstrap iptables conntrack
          socat iproute2 util-linux openssl gcc libc6-dev ca-certificates)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || die "missing Debian packages (${missing[*]}): run as root or apt-get install them"
command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get: this needs Debian or Ubuntu"
say "installing Debian packages: ${missing[*]}"
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confold "${missing[@]}" >&2
# the containerd package's own service unit is not used: keep it from running where systemd is
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi
