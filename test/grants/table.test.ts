import t from 'tap';
import { GrantTable } from '../../src/grants/table.js';
import type { Grant } from '../../src/grants/types.js';

const grant = (over: Partial<Grant>): Grant => ({
  id: 'g1', share: 's1', backend: 'b', path: 's1', guest: { tcp: '127.0.0.1' },
  access: 'rw', squash: 'none', anonUid: 65534, anonGid: 65534, source: 'static', ...over,
});

t.test('find, sharesFor, revoke', async (t) => {
  const table = new GrantTable();
  table.upsert(grant({}));
  table.upsert(grant({ id: 'g2', share: 's2', path: 's2', guest: { cid: 7 } }));
  t.equal(table.find('tcp:127.0.0.1', 's1')?.id, 'g1');
  t.equal(table.find('tcp:127.0.0.1', 's2'), undefined, "another guest's share is not found");
  t.equal(table.find('cid:7', 's2')?.id, 'g2');
  t.same(table.sharesFor('tcp:127.0.0.1'), ['s1']);
  t.equal(table.revoke('g1')?.id, 'g1');
  t.equal(table.find('tcp:127.0.0.1', 's1'), undefined, 'revoked at once');
  t.notOk(table.hasAny('tcp:127.0.0.1'));
  t.equal(table.revoke('g1'), undefined);
});

t.test('IPv4-mapped addresses name the same guest', async (t) => {
  const table = new GrantTable();
  table.upsert(grant({ guest: { tcp: '::FFFF:127.0.0.1' } }));
  t.equal(table.find('tcp:127.0.0.1', 's1')?.id, 'g1');
});

t.test('conflicts are refused whole', async (t) => {
  const table = new GrantTable();
  table.upsert(grant({}));
  t.throws(() => table.upsert(grant({ id: 'g2', path: 'elsewhere', guest: { tcp: '10.0.0.1' } })), { code: 'GRANT_SHARE_CONFLICT' });
  t.throws(() => table.upsert(grant({ id: 'g3' })), { code: 'GRANT_DUPLICATE_GUEST' });
  t.throws(() => table.replaceAll([grant({ id: 'a' }), grant({ id: 'b' })]), { code: 'GRANT_DUPLICATE_GUEST' });
  t.equal(table.size, 1, 'nothing partly applied');
  const changes: string[] = [];
  table.onChange(({ removed, added }) => changes.push(`-${removed.map((g) => g.id)} +${added.map((g) => g.id)}`));
  table.upsert(grant({ access: 'ro' }));
  t.equal(table.find('tcp:127.0.0.1', 's1')?.access, 'ro', 'rw -> ro replaces in place');
  t.same(changes, ['-g1 +g1']);
});

t.test('no share inside another share of the same backend', async (t) => {
  const table = new GrantTable();
  table.upsert(grant({ id: 'outer', share: 'proj', path: 'proj' }));
  t.throws(() => table.upsert(grant({ id: 'inner', share: 'sub', path: 'proj/sub' })), { code: 'GRANT_SHARE_NESTED' }, 'inside');
  t.throws(() => table.upsert(grant({ id: 'above', share: 'all', path: '' })), { code: 'GRANT_SHARE_NESTED' }, 'containing (the backend root)');
  t.throws(() => table.upsert(grant({ id: 'alias', share: 'alias', path: './proj/' })), { code: 'GRANT_SHARE_NESTED' }, 'the same directory under another name');
  table.upsert(grant({ id: 'sibling', share: 'proj2', path: 'proj2' }));
  table.upsert(grant({ id: 'other-backend', share: 'sub', backend: 'b2', path: 'proj/sub' }));
  t.equal(table.size, 3, 'siblings and other backends are fine');
  table.revoke('outer');
  table.upsert(grant({ id: 'inner', share: 'inner', path: 'proj/sub' }));
  t.pass('once the outer share is gone, the inner one may come');
});

t.test("a share's only grant may move it; a share with two grants may not", async (t) => {
  const table = new GrantTable();
  table.upsert(grant({ id: 'g1', share: 's', path: 'a' }));
  table.upsert(grant({ id: 'g1', share: 's', path: 'a/deeper' }));
  t.same(table.location('s'), { backend: 'b', path: 'a/deeper' }, 'moved, even beneath its old place');
  table.upsert(grant({ id: 'g2', share: 's', path: 'a/deeper', guest: { cid: 9 } }));
  t.throws(() => table.upsert(grant({ id: 'g1', share: 's', path: 'elsewhere' })), { code: 'GRANT_SHARE_CONFLICT' });
  table.revoke('g1');
  table.revoke('g2');
  t.equal(table.location('s'), undefined);
  table.upsert(grant({ id: 'g3', share: 'x', path: 'a' }));
  t.pass('paths are released when the last grant of a share goes');
});

t.test('a 10,000-grant snapshot is checked and applied whole', async (t) => {
  const table = new GrantTable();
  const many = Array.from({ length: 10_000 }, (_, i) =>
    grant({ id: `g${i}`, share: `s${i}`, path: `tenants/t${i % 100}/s${i}`, guest: { cid: 3 + (i % 500) } }),
  );
  table.replaceAll(many);
  t.equal(table.size, 10_000);
  t.equal(table.find('cid:3', 's0')?.id, 'g0');
  t.throws(() => table.replaceAll([...many, grant({ id: 'bad', share: 'bad', path: 'tenants/t1' })]), { code: 'GRANT_SHARE_NESTED' });
  t.equal(table.size, 10_000, 'a refused snapshot changes nothing');
});
