// The cache of open objects (src/fs/shares.ts ObjectCache): bounded, least recently used out,
// never closing an object a request still uses, and never evicting one in steady use even though a
// hit in the recent half does not reorder the Map.
import t from 'tap';
import { ObjectCache, type ShareRoot } from '../../src/fs/shares.js';
import type { FsBridge, KernelHandle } from '../../src/native/fsbridge.js';

function cacheOf(limit: number) {
  const closed: number[] = [];
  const byKey = new Map<string, number>();
  let nextFd = 100;
  const native = {
    openByHandle: async () => ({ err: 0, fd: nextFd++ }),
    close: (fd: number) => void closed.push(fd),
  } as unknown as FsBridge;
  const cache = new ObjectCache(native, limit);
  const share = { id: 's', fd: 3, retired: false } as unknown as ShareRoot;
  const kernel: KernelHandle = { type: 1, bytes: Buffer.alloc(8) };
  /** One request on `key`: acquired (opened on a miss) and released. Returns its fd. */
  const use = async (key: string): Promise<number> => {
    const entry = await cache.acquire(key, share, kernel);
    if (typeof entry === 'number') throw new Error(`errno ${entry}`);
    byKey.set(key, entry.fd);
    cache.release(entry);
    return entry.fd;
  };
  const isOpen = (key: string) => byKey.has(key) && !closed.includes(byKey.get(key)!);
  return { cache, closed, use, isOpen, share, kernel };
}

t.test('the least recently used idle object goes first', async (t) => {
  const { cache, use, isOpen } = cacheOf(4);
  for (const key of ['a', 'b', 'c', 'd']) await use(key);
  await use('a'); // four moves since a's: far enough back to be moved
  await use('e');
  t.equal(cache.size, 4);
  t.notOk(isOpen('b'), 'b, the oldest not used again, is closed');
  t.ok(isOpen('a') && isOpen('c') && isOpen('d') && isOpen('e'));
  await use('f');
  t.notOk(isOpen('c'));
  t.ok(isOpen('a'), 'a was used after c');
});

t.test('an object a request holds is never closed, and goes once released', async (t) => {
  const { cache, closed, use, isOpen, share, kernel } = cacheOf(2);
  const held = await cache.acquire('held', share, kernel);
  if (typeof held === 'number') return t.fail('not opened');
  for (const key of ['x', 'y', 'z', 'w']) await use(key);
  t.notOk(closed.includes(held.fd), 'still open while in use');
  cache.release(held);
  await use('v');
  await use('u');
  t.ok(closed.includes(held.fd), 'evicted once idle and oldest');
  t.ok(isOpen('u') && cache.size <= 2);
});

t.test('objects used at least once per limit/2 new objects are never evicted', async (t) => {
  const limit = 64;
  const { cache, closed, use } = cacheOf(limit);
  const hot = ['h0', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7'];
  const hotFds = new Set<number>();
  for (const key of hot) hotFds.add(await use(key));
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 5000; i++) {
    // a cold object a request, and every hot one again within limit/2 cold ones
    await use(`cold-${i}`);
    if (i % (limit / 2 - hot.length) === 0) for (const key of hot) await use(key);
    if (random() < 0.3) await use(hot[Math.floor(random() * hot.length)]!);
    if (cache.size > limit) return t.fail(`size ${cache.size} over the limit ${limit}`);
  }
  t.same(closed.filter((fd) => hotFds.has(fd)), [], 'no hot object was closed');
  t.equal(cache.size, limit);
  t.ok(closed.length >= 5000 + hot.length - limit, `cold objects were evicted (${closed.length})`);
});
