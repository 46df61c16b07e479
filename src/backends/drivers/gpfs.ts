// gpfs: IBM Storage Scale mounts its file systems itself, at the mount point the cluster sets. The
// daemon checks it is mounted there and, when told to, asks for it with `mmmount DEVICE` (this
// node only). It never unmounts it: other users of the node may rely on it.
import path from 'node:path';
import type { GpfsBackend } from '../config.js';
import type { BackendDriver } from './types.js';

export function gpfsDriver(backend: GpfsBackend): BackendDriver {
  return {
    root: backend.mountpoint,
    ...(backend.mmmount ? { mountCommand: { file: path.join(backend.binDir, 'mmmount'), args: [backend.device] } } : {}),
    unmounts: false,
    fstypes: ['gpfs'],
    fuse: false,
    gfidHandles: false,
  };
}
