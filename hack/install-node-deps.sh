#!/usr/bin/env bash
# Install what the image build and the test node need from Debian's packages (make test runs this; root only).
#
#   buildah, debootstrap        make image without Docker (hack/build-image.sh, hack/build-base-image.sh)
#   containerd, runc            the node's container runtime (containerd 1.6 serves CRI v1, which kubelet 1.34 uses)
#   containernetworking-plugins bridge, host-local and loopback: the pod network inside the test's netns
#   iptables, conntrack         kube-proxy (iptables mode) programs Service traffic inside that netns
#   gcc + libc6-dev             the pause binary, statically linked from kubernetes' build/pause/linux/pause.c
#
# Idempotent: installs only what is missing, and runs apt-get update only then.
set -euo pipefail

log() { printf '[node-deps] %s\n' "$*" >&2; }
PACKAGES=(buildah debootstrap containerd runc containernetworking-plugins iptables conntrack gcc libc6-dev)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
  log "installed: ${PACKAGES[*]}"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "ERROR: missing Debian packages ${missing[*]} and not root: install them (apt-get install ${missing[*]})"
  exit 1
fi
log "apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
# The containerd package ships a system service; nothing here starts it (no systemd), and the test node
# runs its own containerd with per-run state, never /var/lib/containerd or /run/containerd.
log "installed ${missing[*]}"
