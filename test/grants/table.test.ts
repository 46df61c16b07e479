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
