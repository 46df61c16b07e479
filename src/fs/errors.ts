// errno -> nfsstat3 (RFC 1813 section 2.6), mapped in one place so every procedure agrees.
import { constants } from 'node:os';
import { Nfs3Status } from '../nfs3/types.js';

const E = constants.errno;

const BY_ERRNO = new Map<number, Nfs3Status>([
  [E.EPERM, Nfs3Status.NFS3ERR_PERM],
  [E.ENOENT, Nfs3Status.NFS3ERR_NOENT],
  [E.EIO, Nfs3Status.NFS3ERR_IO],
  [E.ENXIO, Nfs3Status.NFS3ERR_NXIO],
  [E.EACCES, Nfs3Status.NFS3ERR_ACCES],
  [E.EEXIST, Nfs3Status.NFS3ERR_EXIST],
  [E.EXDEV, Nfs3Status.NFS3ERR_XDEV],
  [E.ENODEV, Nfs3Status.NFS3ERR_NODEV],
  [E.ENOTDIR, Nfs3Status.NFS3ERR_NOTDIR],
  [E.EISDIR, Nfs3Status.NFS3ERR_ISDIR],
  [E.EINVAL, Nfs3Status.NFS3ERR_INVAL],
  [E.EFBIG, Nfs3Status.NFS3ERR_FBIG],
  [E.ENOSPC, Nfs3Status.NFS3ERR_NOSPC],
  [E.EROFS, Nfs3Status.NFS3ERR_ROFS],
  [E.EMLINK, Nfs3Status.NFS3ERR_MLINK],
  [E.ENAMETOOLONG, Nfs3Status.NFS3ERR_NAMETOOLONG],
  [E.ENOTEMPTY, Nfs3Status.NFS3ERR_NOTEMPTY],
  [E.EDQUOT, Nfs3Status.NFS3ERR_DQUOT],
  [E.ESTALE, Nfs3Status.NFS3ERR_STALE],
  [E.EOPNOTSUPP, Nfs3Status.NFS3ERR_NOTSUPP],
  [E.ENOTSUP, Nfs3Status.NFS3ERR_NOTSUPP],
  // A name that is a symlink where O_NOFOLLOW forbids following it: not the kind of object asked for.
  [E.ELOOP, Nfs3Status.NFS3ERR_INVAL],
  [E.EBUSY, Nfs3Status.NFS3ERR_ACCES],
  [E.ETXTBSY, Nfs3Status.NFS3ERR_ACCES],
  // Out of descriptors or memory, or a backend asking to retry: the client retries later (JUKEBOX).
  [E.EMFILE, Nfs3Status.NFS3ERR_JUKEBOX],
  [E.ENFILE, Nfs3Status.NFS3ERR_JUKEBOX],
  [E.EAGAIN, Nfs3Status.NFS3ERR_JUKEBOX],
  [E.ENOMEM, Nfs3Status.NFS3ERR_JUKEBOX],
  [E.EOVERFLOW, Nfs3Status.NFS3ERR_FBIG],
  [E.EBADF, Nfs3Status.NFS3ERR_SERVERFAULT],
  [E.EFAULT, Nfs3Status.NFS3ERR_SERVERFAULT],
]);

export function errnoToNfs3(errno: number): Nfs3Status {
  return BY_ERRNO.get(errno) ?? Nfs3Status.NFS3ERR_IO;
}
