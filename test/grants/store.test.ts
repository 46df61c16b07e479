import t from 'tap';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GrantStore, EMPTY_STORE } from '../../src/grants/store.js';
import type { GrantSpec } from '../../src/grants/document.js';

const spec = (id: string, over: Partial<GrantSpec> = {}): GrantSpec => ({
  id, share: `s-${id}`, backend: 'b', path: `p/${id}`, guest: { cid: 5 }, access: 'ro', squash: 'all', anonUid: 7, anonGid: 8, ...over,
});

t.test('save then load gives back the same state', async (t) => {
  const dir = t.testdir();
  const store = new GrantStore(dir);
  t.same(await store.load(() => t.fail('not corrupt')), EMPTY_STORE, 'nothing stored yet');
  const state = { epoch: 'e1', revision: 42, grants: [spec('a'), spec('b', { guest: { tcp: '10.0.0.9' }, access: 'rw' })] };
  await store.save(state);
  t.same(await new GrantStore(dir).load(() => t.fail('not corrupt')), state);
  t.equal(readFileSync(path.join(dir, 'grants.json'), 'utf8').endsWith('\n'), true);
  t.same(readdirSync(dir), ['grants.json'], 'no temporary file left behind');
});

t.test('saves are applied in call order', async (t) => {
  const dir = t.testdir();
  const store = new GrantStore(dir);
  await Promise.all(Array.from({ length: 20 }, (_, i) => store.save({ epoch: 'e', revision: i + 1, grants: [spec(`g${i}`)] })));
  const loaded = await store.load(() => t.fail('not corrupt'));
  t.equal(loaded.revision, 20);
  t.same(loaded.grants.map((g) => g.id), ['g19']);
});

t.test('a file that cannot be read back is moved aside, not lost', async (t) => {
  for (const bad of ['{"format":1,"epoch":"e","revision":1,"grants":[{"id":"x"}]}', 'not json', '{"format":2}', '{"format":1,"epoch":"e","revision":-1,"grants":[]}']) {
    const dir = t.testdir();
    writeFileSync(path.join(dir, 'grants.json'), bad);
    let reported = '';
    const loaded = await new GrantStore(dir).load((problem, movedTo) => {
      reported = problem;
      t.equal(readFileSync(movedTo, 'utf8'), bad, 'the bad file keeps its bytes');
    });
    t.same(loaded, EMPTY_STORE, `starts empty after: ${bad.slice(0, 30)}`);
    t.not(reported, '', `the problem is reported: ${reported}`);
  }
});

t.test('a save that cannot be written rejects', async (t) => {
  const dir = t.testdir();
  await t.rejects(new GrantStore(path.join(dir, 'missing')).save({ epoch: 'e', revision: 1, grants: [] }));
});
