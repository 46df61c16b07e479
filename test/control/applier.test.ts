import t, { type Test } from 'tap';
import { pino } from 'pino';
import { GrantApplier } from '../../src/control/applier.js';
import { GrantStore } from '../../src/grants/store.js';
import { DirectorySyncError } from '../../src/grants/durable.js';
import { GrantTable } from '../../src/grants/table.js';
import type { GrantSpec } from '../../src/grants/document.js';
import type { Grant } from '../../src/grants/types.js';

const spec = (id: string, over: Partial<GrantSpec> = {}): GrantSpec => ({
  id, share: `s-${id}`, backend: 'b', path: `p/${id}`, guest: { tcp: '127.0.0.1' }, access: 'rw', squash: 'none', anonUid: 65534, anonGid: 65534, ...over,
});
const staticGrant: Grant = { ...spec('static'), source: 'static' };

function setup(t: Test, store?: GrantStore) {
  // t.testdir() empties the directory on every call: a second setup reuses the given store's.
  const dir = store ? '' : t.testdir();
  const grants = new GrantTable();
  const opened: string[] = [];
  const backendUp = { value: false };
  const applier = new GrantApplier({
    grants,
    staticGrants: [staticGrant],
    store: store ?? new GrantStore(dir),
    hasBackend: (id) => id === 'b',
    openShare: async (share) => {
      const location = grants.location(share);
      if (location?.path.includes('missing')) throw Object.assign(new Error(`share ${share}: does not exist`), { code: 'SHARE_PATH_MISSING' });
      if (location?.path.includes('unmountable') && !backendUp.value) throw Object.assign(new Error('backend b cannot be mounted: mount error(13)'), { code: 'BACKEND_UNAVAILABLE' });
      opened.push(share);
    },
    logger: pino({ level: 'silent' }),
  });
  return { dir, grants, applier, opened, backendUp };
}

t.test('a snapshot is served, persisted and acked per grant', async (t) => {
  const { dir, grants, applier } = setup(t);
  await applier.start({ loadStore: true });
  t.same(grants.all().map((g) => g.id), ['static'], 'static grants are served from the start');
  const outcome = await applier.snapshot('e1', 5, [spec('a'), spec('b', { backend: 'nope' }), spec('c', { path: 'missing/c' }), spec('static'), spec('d', { share: 's-a', path: 'p/a' })]);
  t.ok(outcome.ok);
  if (!outcome.ok) return;
  t.same(
    outcome.results.map((r) => [r.grantId, r.state, r.reasonCode]),
    [['a', 'APPLIED', ''], ['b', 'FAILED', 'UNKNOWN_BACKEND'], ['c', 'FAILED', 'SHARE_PATH_MISSING'], ['static', 'FAILED', 'GRANT_DUPLICATE_ID'], ['d', 'FAILED', 'GRANT_DUPLICATE_GUEST']],
  );
  t.same(grants.all().map((g) => g.id).sort(), ['a', 'static']);
  t.equal(grants.get('static')?.source, 'static', 'a pushed grant never replaces a static one');
  t.equal(applier.revision, 5);
  const reloaded = await new GrantStore(dir).load(() => t.fail());
  t.same(reloaded.grants.map((g) => g.id), ['a', 'b', 'c', 'static', 'd'], 'failed grants are kept for a retry after restart');
});

t.test('revision order: deltas follow by exactly one, in the same epoch', async (t) => {
  const { grants, applier } = setup(t);
  await applier.start({ loadStore: true });
  t.match(await applier.upsert('', 1, spec('a')), { ok: false, code: 'REVISION_OUT_OF_ORDER' }, 'no delta before a snapshot');
  t.ok((await applier.snapshot('e1', 3, [spec('a')])).ok);
  t.match(await applier.upsert('e1', 3, spec('b')), { ok: false, code: 'REVISION_OUT_OF_ORDER' }, 'a replayed revision');
  t.match(await applier.upsert('e1', 5, spec('b')), { ok: false, code: 'REVISION_OUT_OF_ORDER' }, 'a gap');
  t.match(await applier.revoke('e2', 4, 'a'), { ok: false, code: 'REVISION_OUT_OF_ORDER' }, 'another epoch');
  t.same(grants.all().map((g) => g.id).sort(), ['a', 'static'], 'refusals changed nothing');
  t.match(await applier.snapshot('e1', 2, []), { ok: false, code: 'REVISION_OUT_OF_ORDER' }, 'an older snapshot');
  t.ok((await applier.snapshot('e1', 3, [spec('a')])).ok, 'the same revision again is fine');
  t.ok((await applier.snapshot('e0', 1, [spec('z')])).ok, 'a new epoch starts over');
  t.same(grants.all().map((g) => g.id).sort(), ['static', 'z'], 'grants missing from a snapshot are revoked');
  t.match(await applier.upsert('e0', 2, spec('y')), { ok: true, revision: 2 });
  t.match(await applier.revoke('e0', 3, 'z'), { ok: true, results: [{ grantId: 'z', state: 'REVOKED' }] });
  t.match(await applier.revoke('e0', 4, 'static'), { ok: true }, 'revoking a static id is accepted...');
  t.ok(grants.get('static'), '...and leaves the static grant alone');
  t.same(grants.all().map((g) => g.id).sort(), ['static', 'y']);
});

t.test('upsert: rw -> ro, a failing new version removes the old one, conflicts retried', async (t) => {
  const { grants, applier } = setup(t);
  await applier.start({ loadStore: true });
  await applier.snapshot('e', 1, [spec('a')]);
  await applier.upsert('e', 2, spec('a', { access: 'ro' }));
  t.equal(grants.get('a')?.access, 'ro');
  const moved = await applier.upsert('e', 3, spec('a', { path: 'missing/a' }));
  t.match(moved, { ok: true, results: [{ grantId: 'a', state: 'FAILED', reasonCode: 'SHARE_PATH_MISSING' }] });
  t.equal(grants.get('a'), undefined, 'the old version is not served either');
  await applier.upsert('e', 4, spec('a'));
  t.match(await applier.upsert('e', 5, spec('b', { share: 's-a', path: 'p/a' })), { results: [{ state: 'FAILED', reasonCode: 'GRANT_DUPLICATE_GUEST' }] });
  await applier.revoke('e', 6, 'a');
  t.equal(grants.get('b')?.share, 's-a', 'a grant that failed on a conflict is served once the conflict is gone');
  t.same(applier.results().map((r) => [r.grantId, r.state]), [['b', 'APPLIED']]);
});

t.test('a persist failure refuses the change; a revoke still fails closed', async (t) => {
  const dir = t.testdir();
  const real = new GrantStore(dir);
  let failing = false;
  const store = Object.assign(Object.create(real) as GrantStore, {
    save: (state: Parameters<GrantStore['save']>[0]) => (failing ? Promise.reject(new Error('disk full')) : real.save(state)),
  });
  const { grants, applier } = setup(t, store);
  await applier.start({ loadStore: true });
  await applier.snapshot('e', 1, [spec('a'), spec('b')]);
  failing = true;
  t.match(await applier.upsert('e', 2, spec('c')), { ok: false, code: 'PERSIST_FAILED' });
  t.notOk(grants.get('c'), 'an upsert that is not durable is not served');
  t.match(await applier.snapshot('e', 2, []), { ok: false, code: 'PERSIST_FAILED' });
  t.ok(grants.get('a'), 'a snapshot that is not durable revokes nothing');
  t.match(await applier.revoke('e', 2, 'a'), { ok: false, code: 'PERSIST_FAILED' });
  t.notOk(grants.get('a'), 'a revoke is enforced even when it cannot be made durable');
  t.ok(grants.get('b'));
  t.equal(applier.revision, 1, 'the revision did not advance');
  failing = false;
  t.match(await applier.revoke('e', 2, 'a'), { ok: true }, 'the same revision applies once the disk is back');
  t.same((await new GrantStore(dir).load(() => t.fail())).grants.map((g) => g.id), ['b']);
});

t.test('a directory sync that fails after the rename: applied, memory follows the file', async (t) => {
  const dir = t.testdir();
  const real = new GrantStore(dir);
  let failing = false;
  const store = Object.assign(Object.create(real) as GrantStore, {
    save: async (state: Parameters<GrantStore['save']>[0]) => {
      await real.save(state);
      if (failing) throw new DirectorySyncError(real.file, new Error('EIO'));
    },
  });
  const { grants, applier } = setup(t, store);
  await applier.start({ loadStore: true });
  await applier.snapshot('e', 1, [spec('a')]);
  failing = true;
  t.match(await applier.upsert('e', 2, spec('b')), { ok: true, revision: 2 });
  t.ok(grants.get('b'), 'served');
  t.equal((await new GrantStore(dir).load(() => t.fail())).revision, 2, 'as on disk');
});

t.test('stored grants are served at start (fail static), and only with a controller configured', async (t) => {
  const first = setup(t);
  await first.applier.start({ loadStore: true });
  await first.applier.snapshot('e', 9, [spec('a'), spec('b')]);
  const store = new GrantStore(first.dir);
  const second = setup(t, store);
  t.same(await second.applier.start({ loadStore: true }), { stored: 2, failed: 0 });
  t.same(second.grants.all().map((g) => g.id).sort(), ['a', 'b', 'static']);
  t.equal(second.applier.revision, 9);
  t.equal(second.applier.epoch, 'e');
  const third = setup(t, store);
  await third.applier.start({ loadStore: false });
  t.same(third.grants.all().map((g) => g.id), ['static']);
});

t.test('a 10,000-grant snapshot applies, and a repeat of it changes nothing', async (t) => {
  const { grants, applier, opened } = setup(t);
  await applier.start({ loadStore: true });
  const many = Array.from({ length: 10_000 }, (_, i) => spec(`g${i}`, { guest: { cid: 3 + (i % 500) } }));
  let changes = 0;
  grants.onChange(() => changes++);
  const outcome = await applier.snapshot('e', 1, many);
  t.ok(outcome.ok);
  t.equal(grants.size, 10_001);
  t.equal(opened.length, 10_000, 'every share opened once');
  t.equal(changes, 1, 'one change for the whole snapshot');
  await applier.snapshot('e', 2, many);
  t.equal(changes, 1, 'an identical snapshot changes nothing');
});

t.test('grants on a backend that cannot be mounted fail with its reason, stay in the table, and are reported served once it mounts', async (t) => {
  const { grants, applier, backendUp } = setup(t);
  await applier.start({ loadStore: true });
  const outcome = await applier.snapshot('e1', 1, [spec('a'), spec('u', { path: 'unmountable/u' })]);
  t.ok(outcome.ok);
  if (!outcome.ok) return;
  t.match(outcome.results.find((r) => r.grantId === 'u'), { state: 'FAILED', reasonCode: 'BACKEND_UNAVAILABLE', reason: /mount error\(13\)/ });
  t.ok(grants.get('u'), 'kept in the table: its guests wait (JUKEBOX) instead of being refused');
  t.equal(await applier.retryUnavailable('b'), 0, 'still down: nothing served');
  backendUp.value = true;
  t.equal(await applier.retryUnavailable('other'), 0, 'another backend: not tried');
  t.equal(await applier.retryUnavailable('b'), 1, 'served once the backend mounts');
  t.ok(grants.get('u'));
  t.match(applier.results().find((r) => r.grantId === 'u'), { state: 'APPLIED' });
});
