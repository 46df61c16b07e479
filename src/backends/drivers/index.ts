import type { BackendConfig } from '../config.js';
import { cephfsDriver } from './cephfs.js';
import { glusterfsDriver } from './glusterfs.js';
import { gpfsDriver } from './gpfs.js';
import { localDriver } from './local.js';
import { nfsDriver } from './nfs.js';
import type { BackendDriver } from './types.js';

export type { BackendDriver, MountCommand } from './types.js';

/** The driver of a backend; `target` is where the daemon mounts what it mounts itself. */
export function driverFor(backend: BackendConfig, target: string): BackendDriver {
  switch (backend.type) {
    case 'local':
      return localDriver(backend);
    case 'cephfs':
      return cephfsDriver(backend, target);
    case 'glusterfs':
      return glusterfsDriver(backend, target);
    case 'gpfs':
      return gpfsDriver(backend);
    case 'nfs':
      return nfsDriver(backend, target);
  }
}
