// The share both in-place encoding tests serve (test/fs/readdirplus-inplace.test.ts and
// attr-inplace.test.ts): `alpha` under dir/exports, granted rw to one TCP guest, and a tmpfs
// mounted inside it when the tests run as root.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import type { Test } from 'tap';
import { HandleCodec, loadHandleSecret } from '../../src/fs/handle.js';
import { GrantTable } from '../../src/grants/table.js';
import type { Grant } from '../../src/grants/types.js';
import type { Peer } from '../../src/rpc/types.js';

export const PEER: Peer = { transport: 'tcp', address: '10.0.0.5', port: 801 };

export const alphaGrant: Grant = {
  id: 'g-alpha', share: 'alpha', backend: 'local', path: 'alpha', guest: { tcp: '10.0.0.5' },
  access: 'rw', squash: 'none', anonUid: 65534, anonGid: 65534, source: 'static',
};

/** The grant table with alphaGrant, and a handle codec whose secret lives under dir/state. */
export function alphaGrants(dir: string): { grants: GrantTable; codec: HandleCodec } {
  const grants = new GrantTable();
  grants.upsert(alphaGrant);
  return { grants, codec: new HandleCodec(loadHandleSecret(path.join(dir, 'state'))) };
}

/**
 * The directories both READDIRPLUS tests list: big/ (3000 entries, names of every padding), and
 * noexec/ (listable, not searchable) and noread/ (searchable, not listable) by a caller who is not
 * their owner, each holding `hidden`.
 */
export function makeListingFixtures(shareDir: string): void {
  mkdirSync(path.join(shareDir, 'big'), { recursive: true });
  for (let i = 0; i < 3000; i++) writeFileSync(path.join(shareDir, 'big', `e${i}-${'z'.repeat(i % 37)}`), '');
  for (const [sub, mode] of [['noexec', 0o744], ['noread', 0o711]] as const) {
    mkdirSync(path.join(shareDir, sub));
    writeFileSync(path.join(shareDir, sub, 'hidden'), '');
    chmodSync(path.join(shareDir, sub), mode);
  }
}

/**
 * A tmpfs at shareDir/mnt (root only), unmounted at teardown: an entry on another mount, which
 * gets neither handle nor attributes. Whether it is mounted.
 */
export function mountInside(t: Test, shareDir: string, isRoot: boolean): boolean {
  let mounted = false;
  if (isRoot) {
    mkdirSync(path.join(shareDir, 'mnt'));
    mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'mg-inplace-test', path.join(shareDir, 'mnt')]).status === 0;
    if (mounted) t.teardown(() => void spawnSync('umount', ['-l', path.join(shareDir, 'mnt')]));
  }
  t.comment(mounted ? 'a tmpfs is mounted at alpha/mnt' : 'no mount point inside the share (needs root and mount)');
  return mounted;
}
