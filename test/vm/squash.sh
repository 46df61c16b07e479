#!/bin/sh
# squash.sh — root squash seen from the kernel client (busybox sh in the guest), run by run-guest.sh as
#   run-guest.sh --port P --export /SHARE --script test/vm/squash.sh [-- ANON_UID ANON_GID]
# $1 is the mount point of a share exported rw with `squash: root` (anonymous ids default 65534);
# the share's root directory must be writable by the anonymous user (mode 0777 or 1777).
# Prints one line per check and "N passed, N failed" last; exits 0 only when all passed.
# Leaves nothing behind. Checked against NFS-Ganesha 4.3 (Squash = Root_Squash).
M=${1:?mount point}; AU=${2:-65534}; AG=${3:-65534}; P=0; F=0
W=$M/squash.$(cut -c1-8 /proc/sys/kernel/random/uuid)
ok() { P=$((P+1)); echo "ok   $1"; }
no() { F=$((F+1)); echo "FAIL $1${2:+: $2}"; }
t() { name=$1; if out=$(eval "$2" 2>&1); then ok "$name"; else no "$name" "$(echo "$out" | tail -n 3 | tr '\n' ' ')"; fi; }
U() { su user -s /bin/sh -c "$1"; }     # as uid 1000 (gid 1000)
dc() { sync; echo 3 > /proc/sys/vm/drop_caches; }
is() { [ "$(stat -c "$1" "$2")" = "$3" ] || { echo "$2: stat $1 is $(stat -c "$1" "$2"), want $3"; return 1; }; }
umask 022
# root (squashed) makes the work dir; 0777 so that uid 1000 can work in it too
mkdir -m 777 "$W" && cd "$W" || { echo "FAIL cannot make $W"; echo "0 passed, 1 failed"; exit 1; }

t "root's new dir belongs to the anonymous user" 'is %u:%g "$W" "$AU:$AG"'
t "root's new file belongs to the anonymous user" 'echo r > r && is %u:%g r "$AU:$AG" && [ "$(cat r)" = r ]'
t "chown by root refused" '! chown 1000:1000 r 2>/dev/null && dc && is %u:%g r "$AU:$AG"'
# knfsd refuses `chown 0:0` (EPERM); Ganesha maps the uid/gid 0 in the request to the anonymous ids,
# a no-op that succeeds. Either is safe: what matters is that root never gets the file.
t "chown 0:0 by root never makes the file root's" 'chown 0:0 r 2>/dev/null; dc && is %u:%g r "$AU:$AG"'
t "uid 1000 is not squashed" 'U "echo u > u && chmod 600 u" && is %u:%g:%a u 1000:1000:600'
t "root cannot read a 0600 file of uid 1000" '! cat u > /dev/null 2>&1 && [ "$(U "cat u")" = u ]'
t "root cannot chmod a file of uid 1000" '! chmod 666 u 2>/dev/null && dc && is %a u 600'
t "root cannot write a 0644 file of uid 1000" 'U "echo v > v" && ! sh -c "echo x >> v" 2>/dev/null && dc && [ "$(cat v)" = v ]'
t "remove everything" 'U "rm -f u v" && cd "$M" && rm -rf "$W" && [ ! -e "$W" ]'
echo "$P passed, $F failed"
[ "$F" -eq 0 ]
