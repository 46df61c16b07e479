// local: a directory of this host (or a file system mounted by someone else). Nothing to mount.
import type { LocalBackend } from '../config.js';
import type { BackendDriver } from './types.js';

export function localDriver(backend: LocalBackend): BackendDriver {
  return { root: backend.path, unmounts: false, fstypes: [], fuse: false, gfidHandles: false };
}
