// What the mount manager needs to know of a backend type: where its shares are, whether and how
// the daemon mounts it, how mountinfo shows it, and what kind of file handles it can give.

export interface MountCommand {
  file: string;
  args: string[];
}

export interface BackendDriver {
  /** The directory the backend's share paths are relative to. */
  readonly root: string;
  /** The daemon runs `mountCommand` when the backend is needed and not mounted. */
  readonly mountCommand?: MountCommand;
  /** The daemon unmounts it when no grant needs it (and at stop). Not for GPFS: the cluster owns it. */
  readonly unmounts: boolean;
  /** What mountinfo must show at `root` (empty: a plain directory, no mount to check). */
  readonly fstypes: readonly string[];
  /** Served through FUSE: a hung daemon can be cut loose by aborting the connection (fusectl). */
  readonly fuse: boolean;
  /**
   * Kernel handles do not survive the kernel dropping its caches (GlusterFS's FUSE client, DESIGN.md
   * "File handles"): handles are built on the gfid instead, via the aux-gfid mount.
   */
  readonly gfidHandles: boolean;
}
