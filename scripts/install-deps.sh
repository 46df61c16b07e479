#!/bin/bash
# install-deps.sh — installs the Debian 12 packages that building and testing manila-gateway need.
# Run as root: `sudo bash scripts/install-deps.sh` (build and run), `... --test` (also the tests) or
# `... --bench` (also `npm run bench`: gcc, libnfs-dev, nfs-ganesha, nfs-ganesha-vfs, rpcbind, iperf3). Idempotent: when everything is present it only says
# so (no apt-get update, works offline). Quiet: apt's output goes to a log, whose tail is shown on failure.
#
#   libnfs-utils              nfs-ls, nfs-cp, nfs-cat: the userspace NFS client of test/integration/libnfs
#   qemu-system-x86, qemu-system-data, cpio, kmod, gzip, xz-utils, zstd
#                             the kernel-client guest of ../shared/vm (build-guest.sh, run-guest.sh;
#                             qemu-system-data has the qboot firmware that makes the boot quick)
#   util-linux, procps        setpriv and flock (run-guest.sh), kill/ps
#   socat                     socket plumbing in tests (TCP -> UNIX bridge, datagram receiver)
#   systemd                   systemd-analyze verify of the unit file
#   openssl                   throwaway certificates for the controller's TLS tests
#   fuse3, bindfs             a FUSE file system the backend tests freeze (SIGSTOP) to make a backend hang
#   glusterfs-server, glusterfs-client, attr
#                             the single-node GlusterFS volume of test/backends (glusterd, mount.glusterfs, getfattr)
#   ceph-mon, ceph-mgr, ceph-osd, ceph-mds, ceph-fuse, ceph-common
#                             the single-node CephFS cluster of test/backends, mounted with ceph-fuse
#   g++, make, python3        node-gyp: the native-bridges addon built by `npm install`
#   ca-certificates           HTTPS for npm and node-gyp's header download
# Node.js >= 20 is not installed here (Debian 12 ships 18): it must already be on PATH.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=$PATH:/usr/sbin:/sbin

# Building and running need only the toolchain of node-gyp; --test adds what the tests drive.
PKGS=(g++ make python3 ca-certificates)
case ${1:-} in
  --bench) PKGS+=(gcc libc6-dev libnfs-dev nfs-ganesha nfs-ganesha-vfs rpcbind iperf3);;
  --test) PKGS+=(libnfs-utils qemu-system-x86 qemu-system-data cpio kmod gzip xz-utils zstd util-linux procps socat systemd openssl
    fuse3 bindfs glusterfs-server glusterfs-client attr ceph-mon ceph-mgr ceph-osd ceph-mds ceph-fuse ceph-common
    prometheus);;  # prometheus: its promtool checks the alert rules and dashboard queries (test/ops)
  "") ;;
  *) echo "usage: install-deps.sh [--test | --bench]" >&2; exit 2;;
esac

missing=()
for p in "${PKGS[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done

node_ok=1
if ! command -v node >/dev/null 2>&1; then
  node_ok=0; echo "install-deps: node is not on PATH; manila-gateway needs Node.js >= 20 (not installed by this script)" >&2
elif [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  node_ok=0; echo "install-deps: node $(node --version) is too old; manila-gateway needs Node.js >= 20" >&2
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  [ $node_ok = 1 ] || exit 1
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "install-deps: not root; as root, run:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

log=${TMPDIR:-/tmp}/manila-gateway-install-deps.log
echo "install-deps: installing ${missing[*]} (log: $log)"
step() {  # step WHAT CMD...: runs CMD with its output in the log; on failure shows the log's tail
  echo "== $1: ${*:2}" >> "$log"
  if ! "${@:2}" >> "$log" 2>&1; then
    echo "install-deps: $1 failed; the last lines of $log:" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
}
: > "$log"
step "apt-get update" apt-get update
step "apt-get install" apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: done"
[ $node_ok = 1 ] || exit 1
