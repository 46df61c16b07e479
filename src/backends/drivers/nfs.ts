// nfs: a filer (Isilon, NetApp, ...) through the kernel NFS client.
import type { NfsBackend } from '../config.js';
import type { BackendDriver } from './types.js';

export function nfsDriver(backend: NfsBackend, target: string): BackendDriver {
  const server = backend.server.includes(':') && !backend.server.startsWith('[') ? `[${backend.server}]` : backend.server;
  const v4 = backend.version.startsWith('4');
  return {
    root: target,
    mountCommand: {
      file: 'mount',
      args: ['-t', v4 ? 'nfs4' : 'nfs', `${server}:${backend.export}`, target, '-o', [`vers=${backend.version}`, ...backend.options].join(',')],
    },
    unmounts: true,
    fstypes: v4 ? ['nfs4'] : ['nfs'],
    fuse: false,
    gfidHandles: false,
  };
}
