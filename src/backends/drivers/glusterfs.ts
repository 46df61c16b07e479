// glusterfs: the FUSE client through mount.glusterfs(8). aux-gfid-mount makes MOUNT/.gfid/<gfid>
// reachable: the only way back to an object once the kernel forgets it (DESIGN.md "File handles").
import type { GlusterfsBackend } from '../config.js';
import type { BackendDriver } from './types.js';

export function glusterfsDriver(backend: GlusterfsBackend, target: string): BackendDriver {
  const [first, ...others] = backend.servers;
  const options = ['aux-gfid-mount'];
  if (others.length > 0) options.push(`backup-volfile-servers=${others.join(':')}`);
  options.push(...backend.options);
  return {
    root: target,
    mountCommand: { file: 'mount', args: ['-t', 'glusterfs', `${first}:/${backend.volume}`, target, '-o', options.join(',')] },
    unmounts: true,
    fstypes: ['fuse.glusterfs'],
    fuse: true,
    gfidHandles: true,
  };
}
