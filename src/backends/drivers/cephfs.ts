// cephfs: the kernel client (`mount -t ceph`, mount.ceph(8)) or ceph-fuse(8). Credentials only
// by file: secretfile= (the bare key) for the kernel, --keyfile or --keyring for ceph-fuse.
import type { CephfsBackend } from '../config.js';
import type { BackendDriver } from './types.js';

export function cephfsDriver(backend: CephfsBackend, target: string): BackendDriver {
  if (backend.client === 'kernel') {
    const options = [`name=${backend.user}`, `secretfile=${backend.secretFile}`];
    // mds_namespace= is the name every kernel since 4.8 takes (fs= only from 5.17)
    if (backend.fsName) options.push(`mds_namespace=${backend.fsName}`);
    if (backend.confFile) options.push(`conf=${backend.confFile}`);
    options.push(...backend.options);
    return {
      root: target,
      mountCommand: { file: 'mount', args: ['-t', 'ceph', `${backend.monitors.join(',')}:${backend.root}`, target, '-o', options.join(',')] },
      unmounts: true,
      fstypes: ['ceph'],
      fuse: false,
      gfidHandles: false,
    };
  }
  const args = [target, '--id', backend.user, '-r', backend.root];
  args.push('-c', backend.confFile ?? '/dev/null');
  if (backend.monitors.length > 0) args.push('-m', backend.monitors.join(','));
  if (backend.keyringFile) args.push('--keyring', backend.keyringFile);
  else args.push('--keyfile', backend.secretFile!);
  if (backend.fsName) args.push('--client_fs', backend.fsName);
  // a cluster that does not answer fails the mount within the mount bound instead of retrying forever
  args.push(`--client_mount_timeout=${Math.max(1, Math.floor(backend.mountTimeoutMs / 1000) - 1)}`);
  if (backend.options.length > 0) args.push('-o', backend.options.join(','));
  return {
    root: target,
    mountCommand: { file: 'ceph-fuse', args },
    unmounts: true,
    fstypes: ['fuse.ceph-fuse', 'fuse'],
    fuse: true,
    gfidHandles: false,
  };
}
