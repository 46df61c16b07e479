#!/bin/sh
# refused.sh — a share the guest was not granted cannot be mounted (busybox sh in the guest), run as
#   run-guest.sh --no-mount --port P --script test/vm/refused.sh -- /NOT_GRANTED [/GRANTED [/GRANTED/SUBDIR]]
# Mounts nothing by itself ($1 is empty with --no-mount). Expects the mount of /NOT_GRANTED to fail
# and, when /GRANTED is given, the mount of /GRANTED (same options) to work, which shows that the
# refusal was the grant's doing. With /GRANTED/SUBDIR, that directory below the share root must
# mount as the root of its own mount, holding a file named "marker".
# Prints one line per check and "N passed, N failed" last.
DENIED=${2:?export that must be refused}; GRANTED=${3:-}; SUBDIR=${4:-}; P=0; F=0
ok() { P=$((P+1)); echo "ok   $1"; }
no() { F=$((F+1)); echo "FAIL $1${2:+: $2}"; }
mkdir -p /mnt/x /mnt/y
# the kill after 60 s guards against a server that never answers (the mount is hard)
if out=$(timeout -s KILL 60 mount -t nfs -o "$NFS_OPTS" "$NFS_SERVER:$DENIED" /mnt/x 2>&1); then
  no "mount of $DENIED refused" "it mounted: $(ls -A /mnt/x | head -n 5 | tr '\n' ' ')"
  umount /mnt/x
else
  ok "mount of $DENIED refused ($(echo "$out" | tail -n 1))"
fi
if [ -n "$GRANTED" ]; then
  if out=$(timeout -s KILL 60 mount -t nfs -o "$NFS_OPTS" "$NFS_SERVER:$GRANTED" /mnt/y 2>&1); then
    if ls /mnt/y > /dev/null; then ok "mount of $GRANTED works"; else no "mount of $GRANTED works" "ls failed"; fi
    umount /mnt/y || no "umount of $GRANTED"
  else
    no "mount of $GRANTED works" "$out"
  fi
fi
if [ -n "$SUBDIR" ]; then
  mkdir -p /mnt/z
  if out=$(timeout -s KILL 60 mount -t nfs -o "$NFS_OPTS" "$NFS_SERVER:$SUBDIR" /mnt/z 2>&1); then
    if [ -f /mnt/z/marker ]; then ok "mount of $SUBDIR below the share root"; else no "mount of $SUBDIR below the share root" "no marker: $(ls -A /mnt/z | tr '\n' ' ')"; fi
    umount /mnt/z || no "umount of $SUBDIR"
  else
    no "mount of $SUBDIR below the share root" "$out"
  fi
fi
echo "$P passed, $F failed"
[ "$F" -eq 0 ]
