// The NFS version 3 program (RFC 1813 section 3): 100003, version 3, procedures 0 to 21.
import { AuthFlavor, AuthStat, PROGRAM, type ProcedureHandler, type RpcProgram } from '../rpc/types.js';
import type { NfsFileService } from '../fs/types.js';
import { nfsNull } from './null.js';
import { getattr } from './getattr.js';
import { setattr } from './setattr.js';
import { lookup } from './lookup.js';
import { access } from './access.js';
import { readlink } from './readlink.js';
import { read } from './read.js';
import { write } from './write.js';
import { create } from './create.js';
import { mkdir } from './mkdir.js';
import { symlink } from './symlink.js';
import { mknod } from './mknod.js';
import { remove } from './remove.js';
import { rmdir } from './rmdir.js';
import { rename } from './rename.js';
import { link } from './link.js';
import { readdir } from './readdir.js';
import { readdirplus } from './readdirplus.js';
import { fsstat } from './fsstat.js';
import { fsinfo } from './fsinfo.js';
import { pathconf } from './pathconf.js';
import { commit } from './commit.js';

export const NFS_V3 = 3;

/** RFC 1813 section 3: procedure numbers, in the RFC's names. */
export enum Nfs3Proc {
  NULL = 0,
  GETATTR = 1,
  SETATTR = 2,
  LOOKUP = 3,
  ACCESS = 4,
  READLINK = 5,
  READ = 6,
  WRITE = 7,
  CREATE = 8,
  MKDIR = 9,
  SYMLINK = 10,
  MKNOD = 11,
  REMOVE = 12,
  RMDIR = 13,
  RENAME = 14,
  LINK = 15,
  READDIR = 16,
  READDIRPLUS = 17,
  FSSTAT = 18,
  FSINFO = 19,
  PATHCONF = 20,
  COMMIT = 21,
}

/**
 * RFC 1813 section 4.4: the server may refuse a flavor with AUTH_TOOWEAK. We understand AUTH_SYS
 * and AUTH_NONE (the fs layer squashes AUTH_NONE callers to the anonymous ids); anything else
 * (AUTH_DH, RPCSEC_GSS, ...) would carry an identity we cannot check.
 */
function requireSysOrNone(handler: ProcedureHandler): ProcedureHandler {
  return (call, reply) => {
    if (call.flavor !== AuthFlavor.AUTH_SYS && call.flavor !== AuthFlavor.AUTH_NONE) {
      return { auth: AuthStat.AUTH_TOOWEAK };
    }
    return handler(call, reply);
  };
}

export function createNfsProgram(fs: NfsFileService): RpcProgram {
  const factories: Record<Nfs3Proc, (fs: NfsFileService) => ProcedureHandler> = {
    [Nfs3Proc.NULL]: nfsNull,
    [Nfs3Proc.GETATTR]: getattr,
    [Nfs3Proc.SETATTR]: setattr,
    [Nfs3Proc.LOOKUP]: lookup,
    [Nfs3Proc.ACCESS]: access,
    [Nfs3Proc.READLINK]: readlink,
    [Nfs3Proc.READ]: read,
    [Nfs3Proc.WRITE]: write,
    [Nfs3Proc.CREATE]: create,
    [Nfs3Proc.MKDIR]: mkdir,
    [Nfs3Proc.SYMLINK]: symlink,
    [Nfs3Proc.MKNOD]: mknod,
    [Nfs3Proc.REMOVE]: remove,
    [Nfs3Proc.RMDIR]: rmdir,
    [Nfs3Proc.RENAME]: rename,
    [Nfs3Proc.LINK]: link,
    [Nfs3Proc.READDIR]: readdir,
    [Nfs3Proc.READDIRPLUS]: readdirplus,
    [Nfs3Proc.FSSTAT]: fsstat,
    [Nfs3Proc.FSINFO]: fsinfo,
    [Nfs3Proc.PATHCONF]: pathconf,
    [Nfs3Proc.COMMIT]: commit,
  };
  // Built once: no closure per call.
  const handlers: ProcedureHandler[] = [];
  const names: string[] = [];
  for (let proc = Nfs3Proc.NULL; proc <= Nfs3Proc.COMMIT; proc++) {
    const handler = factories[proc as Nfs3Proc](fs);
    handlers[proc] = proc === Nfs3Proc.NULL ? handler : requireSysOrNone(handler);
    names[proc] = Nfs3Proc[proc]!;
  }
  return {
    prog: PROGRAM.NFS,
    lowVersion: NFS_V3,
    highVersion: NFS_V3,
    name: 'nfs3',
    procedure: (vers, proc) => (vers === NFS_V3 ? handlers[proc] : undefined),
    procedureName: (vers, proc) => (vers === NFS_V3 ? names[proc] : undefined),
  };
}
