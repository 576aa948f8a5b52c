#!/usr/bin/env bash
# Install everything berth needs on Debian 12, as root: system packages, a
# virtualenv in .venv, and berth itself with its test dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "setup: run as root (berthd mounts file systems and creates cgroups)" >&2
    exit 1
fi

packages=(python3 python3-venv runc conmon tini busybox-static runsc docker.io procps iproute2 util-linux
          qemu-system-x86 gcc libc6-dev qemu-user-static docker-registry skopeo umoci apache2-utils openssl
          mmdebstrap nftables docker-compose)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's docker.io is only the comparison engine for bench/: never leave it running here.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
    systemctl stop docker docker.socket || true
fi

if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "setup: done (berthd and berth are in .venv/bin)"
