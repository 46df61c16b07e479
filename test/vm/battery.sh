#!/bin/sh
# battery.sh — the kernel-client battery (busybox sh in the guest), run by run-guest.sh as
#   run-guest.sh --port P --export /SHARE --script test/vm/battery.sh [-- --devices-allowed]
# $1 is the NFS mount point of a share exported rw with no squash. Prints one line per check and
# "N passed, N failed" last; exits 0 only when every check passed. Leaves nothing behind.
# Every expectation is what a local Linux filesystem (tmpfs, ext4) gives the same calls; checked
# against tmpfs inside the guest and against NFS-Ganesha 4.3 (VFS, No_Root_Squash).
# One deliberate exception: device nodes. The gateway refuses them (a guest must not create a
# device on a host filesystem), so `mknod c|b` must fail. `--devices-allowed` flips that check
# for reference runs (tmpfs, Ganesha), where root may make devices.
# The work dir's name is random: guests booted alike get the same PIDs, and may share an export.
M=${1:?mount point}; P=0; F=0; W=$M/battery.$(cut -c1-8 /proc/sys/kernel/random/uuid)
DEVICES=refused; [ "${2:-}" != --devices-allowed ] || DEVICES=allowed
ok() { P=$((P+1)); echo "ok   $1"; }
no() { F=$((F+1)); echo "FAIL $1${2:+: $2}"; }
# t NAME CODE: one check, CODE eval'd in a subshell (cwd $W); a failing check shows its last output
t() { name=$1; if out=$(eval "$2" 2>&1); then ok "$name"; else no "$name" "$(echo "$out" | tail -n 3 | tr '\n' ' ')"; fi; }
U() { su user -s /bin/sh -c "$1"; }     # as uid 1000 (gid 1000)
O() { su other -s /bin/sh -c "$1"; }    # as uid 1001 (gid 1001)
dc() { sync; echo 3 > /proc/sys/vm/drop_caches; }   # forget cached pages and attributes
is() { [ "$(stat -c "$1" "$2")" = "$3" ] || { echo "$2: stat $1 is $(stat -c "$1" "$2"), want $3"; return 1; }; }
long() { awk -v n="$1" -v c="$2" 'BEGIN { while (i++ < n) s = s c; print s }'; }
umask 022
mkdir -p "$W" && chmod 755 "$W" && cd "$W" || { echo "FAIL cannot make $W"; echo "0 passed, 1 failed"; exit 1; }

# --- files ------------------------------------------------------------------------------------------
t "create + write" 'echo hello > a && [ -f a ]'
t "read back" '[ "$(cat a)" = hello ]'
t "1 MiB round trip, md5 after drop_caches" 'dd if=/dev/urandom of=/tmp/c1 bs=64k count=16 2>/dev/null &&
  cp /tmp/c1 c1 && dc && [ "$(md5sum < c1)" = "$(md5sum < /tmp/c1)" ] && is %s c1 1048576'
t "append" 'echo world >> a && [ "$(cat a)" = "$(printf "hello\nworld")" ]'
t "stat: size, type, links, mode, owner" 'is "%s|%F|%h|%a|%u:%g" a "12|regular file|1|644|0:0"'
t "rename" 'mv a b && [ ! -e a ] && [ "$(head -n 1 b)" = hello ]'
t "rename over an existing file" 'echo x > c && i=$(stat -c %i c) && mv c b && [ "$(cat b)" = x ] && [ ! -e c ] &&
  is %i b "$i"'
t "rename into another directory" 'mkdir mvd && echo m > mvf && mv mvf mvd/ && [ "$(cat mvd/mvf)" = m ] && [ ! -e mvf ] &&
  rm mvd/mvf && rmdir mvd'
t "hard link: link count, same inode" 'ln b l && is %h b 2 && is %h l 2 && is %i l "$(stat -c %i b)"'
t "unlink one link" 'rm l && is %h b 1 && [ "$(cat b)" = x ]'
t "hard link to a directory refused" 'mkdir hd && ! ln hd hd2 2>/dev/null && [ ! -e hd2 ] && rmdir hd'
t "symlink + readlink" 'ln -s b s && [ "$(readlink s)" = b ] && [ -L s ] && [ "$(cat s)" = x ] && is %F s "symbolic link"'
t "dangling symlink" 'ln -s nowhere dl && [ -L dl ] && [ ! -e dl ] && [ "$(readlink dl)" = nowhere ] && rm dl && [ ! -L dl ]'
t "symlink with a 1000-byte target" 'tg=$(long 1000 x) && ln -s "$tg" ls1 && [ "$(readlink ls1)" = "$tg" ] && rm ls1'
t "chmod, setuid and setgid bits" 'chmod 640 b && is %a b 640 && chmod 4755 b && is %a b 4755 && chmod 2750 b && is %a b 2750 &&
  chmod 644 b && is %a b 644'
t "chown as root (no squash)" 'chown 1000:1001 b && is %u:%g b 1000:1001 && chown 0:0 b && is %u:%g b 0:0'
t "chown clears the setuid bit" 'echo s > sx && chmod 4755 sx && chown 1000 sx && dc && is %a:%u sx 755:1000 && rm sx'
t "truncate shrink + grow" 'printf 0123456789 > tr && truncate -s 4 tr && [ "$(cat tr)" = 0123 ] &&
  truncate -s 1000 tr && is %s tr 1000 && [ "$(dd if=tr bs=1 skip=500 count=1 2>/dev/null | od -An -tx1 | tr -d " ")" = 00 ]'
t "write at 5 GiB (64-bit offsets), sparse" 'printf X | dd of=sp bs=1 seek=5368709120 conv=notrunc 2>/dev/null &&
  dc && is %s sp 5368709121 && [ "$(dd if=sp bs=1 skip=5368709120 count=1 2>/dev/null)" = X ] &&
  [ "$(dd if=sp bs=1 skip=4294967296 count=1 2>/dev/null | od -An -tx1 | tr -d " ")" = 00 ] && rm sp'
t "set mtime and atime" 'touch -m -d "2001-02-03 04:05:06" b && touch -a -d "2002-03-04 05:06:07" b &&
  is %Y b "$(date -d "2001-02-03 04:05:06" +%s)" && is %X b "$(date -d "2002-03-04 05:06:07" +%s)"'
t "a write updates mtime" 'touch -d "2001-02-03 04:05:06" b && echo more >> b && dc &&
  [ "$(stat -c %Y b)" -gt "$(date -d "2001-02-03 04:05:06" +%s)" ]'
t "exclusive create (O_EXCL)" 'sh -c "set -C; echo e > ex" && [ "$(cat ex)" = e ] && is %a ex 644 &&
  d=$(( $(date +%s) - $(stat -c %Y ex) )) && [ ${d#-} -lt 600 ] &&
  ! sh -c "set -C; echo f > ex" 2>/dev/null && [ "$(cat ex)" = e ] && rm ex'
t "umask applies to files and dirs" '(umask 027 && echo u > um && mkdir umd) && is %a um 640 && is %a umd 750 && rm um && rmdir umd'
t "names: space, UTF-8, leading dash, backslash, 255 bytes" 'n255=$(long 255 n) && mkdir nm && cd nm &&
  for n in "a b" "ünï€" "-dash" "back\\slash" ".hid" "$n255"; do echo "$n" > "./$n" || exit 1; done &&
  for n in "a b" "ünï€" "-dash" "back\\slash" ".hid" "$n255"; do [ "$(cat "./$n")" = "$n" ] || exit 1; done &&
  printf "%s\n" * .[!.]* > /tmp/names && [ "$(wc -l < /tmp/names)" = 6 ] &&
  for n in "a b" "ünï€" "-dash" "back\\slash" ".hid" "$n255"; do grep -qxF -e "$n" /tmp/names || exit 1; done &&
  for n in "a b" "ünï€" "-dash" "back\\slash" ".hid" "$n255"; do rm "./$n" || exit 1; done && cd .. && rmdir nm'
t "a 256-byte name is refused" 'n=$(long 256 n) && ! touch "$n" 2>/dev/null && [ "$(ls | grep -c nnnnnnnn)" = 0 ]'

# --- directories ------------------------------------------------------------------------------------
t "mkdir + rmdir" 'mkdir d && [ -d d ] && is %h d 2 && rmdir d && [ ! -e d ]'
t "mkdir -p nested, link counts" 'mkdir -p n1/n2/n3 && [ -d n1/n2/n3 ] && is %h n1 3 && is %h n1/n2/n3 2 &&
  mkdir n1/x && is %h n1 4 && rmdir n1/x && is %h n1 3'
t "rename a directory" 'mv n1 n1r && [ -d n1r/n2/n3 ] && [ ! -e n1 ] && mv n1r n1'
t "rename a directory over an empty one" 'mkdir e1 e2 && echo in > e1/f && mv -T e1 e2 && [ ! -e e1 ] && [ "$(cat e2/f)" = in ] &&
  rm e2/f && rmdir e2'
t "rename a directory over a non-empty one refused" 'mkdir e3 e4 && : > e4/x && ! mv -T e3 e4 2>/dev/null && [ -d e3 ] &&
  [ -e e4/x ] && rm e4/x && rmdir e3 e4'
t "rmdir of a non-empty dir refused" 'mkdir e && : > e/f && ! rmdir e 2>/dev/null && [ -e e/f ]'
t "ls -l" 'ls -l > /tmp/ls.out && grep -q "^l.* s -> b$" /tmp/ls.out && grep -q "^-rw-r--r-- .* b$" /tmp/ls.out &&
  grep -q "^d.* e$" /tmp/ls.out'
t "readdir lists what was made" '[ "$(ls | tr "\n" " ")" = "b c1 e n1 s tr " ]'
t "df" 'df -kP "$M" > /tmp/df.out && [ "$(awk "NR == 2 {print \$2}" /tmp/df.out)" -gt 0 ] && stat -f "$M" > /dev/null'
t "ENOENT for a missing name" '! cat missing 2>/dev/null && ! stat missing 2>/dev/null &&
  cat missing 2>&1 | grep -q "No such file or directory"'
t "1000-entry directory" 'mkdir many && i=0 && while [ $i -lt 1000 ]; do : > many/f$i; i=$((i+1)); done &&
  [ "$(ls many | wc -l)" = 1000 ] && [ "$(ls many | sort -u | wc -l)" = 1000 ] && dc && [ "$(ls many | wc -l)" = 1000 ] &&
  rm -r many && [ ! -e many ]'

# --- special files ----------------------------------------------------------------------------------
t "mkfifo (FIFOs allowed)" 'mkfifo ff && [ -p ff ] && is %F ff fifo && { echo hi > ff & r=$(cat ff); wait; [ "$r" = hi ]; } && rm ff'
if [ $DEVICES = refused ]; then
  t "mknod of a device refused" 'mknod cdev c 1 3 2>/dev/null; mknod bdev b 7 0 2>/dev/null
  if [ -e cdev ] || [ -e bdev ]; then echo "made: $(ls -l cdev bdev 2>/dev/null | tr "\n" " ")"; rm -f cdev bdev; exit 1; fi'
else
  t "mknod of a device (allowed: reference run)" 'mknod cdev c 1 3 && is "%F %t:%T" cdev "character special file 1:3" && rm cdev'
fi

# --- permissions as other users (AUTH_SYS uid/gid, checked by the server) -----------------------------------
t "su: uid 1000 and 1001" '[ "$(U "id -u"):$(O "id -u")" = 1000:1001 ]'
t "setup: a 1777 dir, a root 0755 dir, a root 0700 dir, a root 0644 file" 'mkdir -m 1777 pub && is %A pub drwxrwxrwt &&
  mkdir rd && echo x > rd/f && chmod 666 rd/f && mkdir -m 700 priv && echo secret > priv/f && echo r > ro && chmod 644 ro'
t "user cannot write a 0644 root file" '! U "echo x >> ro" 2>/dev/null && ! U "truncate -s 0 ro" 2>/dev/null && dc && [ "$(cat ro)" = r ]'
t "user can read a 0644 root file" '[ "$(U "cat ro")" = r ]'
t "user cannot create or mkdir in a root 0755 dir" '! U "touch rd/u" 2>/dev/null && ! U "mkdir rd/ud" 2>/dev/null &&
  [ ! -e rd/u ] && [ ! -e rd/ud ]'
t "user cannot delete a 0666 file in a root 0755 dir" '! U "rm -f rd/f" 2>/dev/null && [ -e rd/f ]'
t "user cannot look into a root 0700 dir" '! U "cat priv/f" 2>/dev/null && ! U "ls priv" 2>/dev/null'
t "user creates in a 1777 dir, owns it" 'U "echo u > pub/u" && is %u:%g pub/u 1000:1000 && [ "$(cat pub/u)" = u ]'
t "user touches its own file, sets its mtime" 'U "touch pub/u" && U "touch -d \"2001-02-03 04:05:06\" pub/u" &&
  is %Y pub/u "$(date -d "2001-02-03 04:05:06" +%s)"'
t "user chmods its own file" 'U "chmod 600 pub/u" && is %a pub/u 600 && U "chmod 644 pub/u" && is %a pub/u 644'
t "user cannot write its own 0444 file" 'U "echo v > pub/v && chmod 444 pub/v" && ! U "echo x >> pub/v" 2>/dev/null &&
  dc && [ "$(cat pub/v)" = v ]'
t "user writes a 0444 file through the fd that created it" 'U "umask 222; dd if=/tmp/c1 of=pub/w bs=64k 2>/dev/null" &&
  dc && is %a:%u pub/w 444:1000 && [ "$(md5sum < pub/w)" = "$(md5sum < /tmp/c1)" ]'
t "user cannot read another user 0600 file" 'O "echo o > pub/o && chmod 600 pub/o" && ! U "cat pub/o" 2>/dev/null &&
  [ "$(O "cat pub/o")" = o ]'
t "group bits: 0640 root:1000 file readable by 1000, not 1001" 'echo g > grp && chown 0:1000 grp && chmod 640 grp &&
  [ "$(U "cat grp")" = g ] && ! O "cat grp" 2>/dev/null'
t "user cannot chmod another user file" '! U "chmod 666 pub/o" 2>/dev/null && dc && is %a pub/o 600'
t "user cannot give its file away (chown, chgrp)" '! U "chown 1001 pub/u" 2>/dev/null && ! U "chgrp 1001 pub/u" 2>/dev/null &&
  dc && is %u:%g pub/u 1000:1000'
t "user sets now on a 0666 file of another, not an explicit time" 'echo w > ww && chmod 666 ww && touch -d "2001-02-03 04:05:06" ww &&
  U "touch ww" && [ "$(stat -c %Y ww)" -gt "$(date -d "2001-02-03 04:05:06" +%s)" ] &&
  ! U "touch -d \"2001-02-03 04:05:06\" ww" 2>/dev/null && dc && [ "$(stat -c %Y ww)" -gt "$(date -d "2001-02-03 04:05:06" +%s)" ]'
t "a write by a non-owner clears setuid" 'echo s > pub/s && chmod 4777 pub/s && U "echo y >> pub/s" && dc && is %a pub/s 777'
t "sticky dir: another user cannot delete" '! O "rm -f pub/u" 2>/dev/null && [ -e pub/u ]'
t "sticky dir: another user cannot rename out" 'O "mkdir pub/od" && ! O "mv pub/u pub/od/" 2>/dev/null && [ -e pub/u ] &&
  [ ! -e pub/od/u ]'
t "sticky dir: another user cannot rename over" 'O "echo o2 > pub/o2" && ! O "mv -f pub/o2 pub/u" 2>/dev/null && dc &&
  [ "$(cat pub/u)" = u ] && [ -e pub/o2 ]'
t "sticky dir: the owner deletes its own file" 'U "echo z > pub/z && rm pub/z" && [ ! -e pub/z ]'
t "setgid dir: new file gets its group, new dir its group and setgid" 'mkdir sg && chown 0:1001 sg && chmod 2777 sg &&
  U "echo f > sg/f && mkdir sg/d" && is %u:%g sg/f 1000:1001 && is %g:%a sg/d 1001:2755'
t "chmod g+s by a non-member of the group drops setgid" 'U "chmod 2755 sg/f" && dc && is %a sg/f 755'

# --- 64 MiB through the mount: written with dd, caches dropped so the read comes back over the wire -------
big() {
  dd if=/dev/urandom of=/tmp/src bs=1M count=64 2>/dev/null || return 1
  want=$(md5sum < /tmp/src)
  t0=$(cut -d' ' -f1 /proc/uptime)
  dd if=/tmp/src of=big bs=1M conv=fsync 2>/dev/null || return 1
  t1=$(cut -d' ' -f1 /proc/uptime)
  rm -f /tmp/src; dc
  got=$(dd if=big bs=1M 2>/dev/null | md5sum)
  t2=$(cut -d' ' -f1 /proc/uptime)
  echo "     64 MiB: write $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s, read $(awk "BEGIN{printf \"%.1f\", $t2 - $t1}") s" >&2
  [ "$(stat -c %s big)" = 67108864 ] && [ "$got" = "$want" ] && rm big
}
if big; then ok "dd 64 MiB write + read, md5 after drop_caches"; else no "dd 64 MiB write + read, md5 after drop_caches"; fi

rm -f /tmp/c1 /tmp/ls.out /tmp/df.out /tmp/names
t "remove everything" 'cd "$M" && rm -rf "$W" && [ ! -e "$W" ]'
echo "$P passed, $F failed"
[ "$F" -eq 0 ]
