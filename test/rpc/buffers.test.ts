import t, { type Test } from 'tap';
import v8 from 'node:v8';
import vm from 'node:vm';
import { LARGE_BUFFER_MIN, LARGE_BUFFER_SIZE, MEDIUM_BUFFER_SIZE, LargeBufferPool, largeBuffers } from '../../src/rpc/buffers.js';
import { XdrWriter } from '../../src/rpc/xdr.js';
import { RecordReader } from '../../src/rpc/record.js';

t.test('a buffer given back is the next one taken; sizes beyond the class are refused', async (t) => {
  const pool = new LargeBufferPool();
  const a = pool.take(LARGE_BUFFER_SIZE)!;
  t.equal(a.length, LARGE_BUFFER_SIZE);
  t.equal(pool.take(LARGE_BUFFER_SIZE + 1), undefined);
  pool.give(a.subarray(100, 200)); // any view of it
  t.equal(pool.freeCount, 1);
  pool.give(a); // twice: still one entry
  t.equal(pool.freeCount, 1);
  t.not(pool.take(10)!.buffer, a.buffer, 'a small request is served by the medium class');
  t.equal(pool.take(MEDIUM_BUFFER_SIZE + 1)!.buffer, a.buffer, 'the same memory comes back');
  t.equal(pool.freeCount, 0);
  const m = pool.take(4096)!;
  t.equal(m.length, MEDIUM_BUFFER_SIZE);
  pool.give(m);
  t.equal(pool.take(MEDIUM_BUFFER_SIZE)!.buffer, m.buffer, 'each class reuses its own');
});

t.test('buffers the pool did not make are ignored', async (t) => {
  const pool = new LargeBufferPool();
  pool.give(Buffer.allocUnsafeSlow(LARGE_BUFFER_SIZE));
  pool.give(Buffer.alloc(16));
  t.equal(pool.freeCount, 0);
});

t.test('a pinned buffer is never handed out again, even once unpinned after being given back', async (t) => {
  const pool = new LargeBufferPool();
  const a = pool.take(LARGE_BUFFER_SIZE)!;
  pool.pin(a);
  pool.pin(a.subarray(8));
  pool.give(a); // the call answered (JUKEBOX) while the pool thread still uses it
  t.equal(pool.freeCount, 0);
  pool.unpin(a);
  pool.give(a);
  t.equal(pool.freeCount, 0, 'still pinned once');
  pool.unpin(a);
  const b = pool.take(LARGE_BUFFER_SIZE)!;
  t.not(b.buffer, a.buffer, 'a fresh buffer: the dropped one is left to the garbage collector');
  pool.give(a); // a late give after the last unpin is fine: nobody uses it any more
  t.equal(pool.freeCount, 1);
});

t.test('whilePinned: pinned while the work runs, unpinned before its value is mapped, and after a failure', async (t) => {
  const pool = new LargeBufferPool();
  const a = pool.take(MEDIUM_BUFFER_SIZE)!;
  let release!: (n: number) => void;
  const mapped = pool.whilePinned(a, () => new Promise<number>((resolve) => (release = resolve)), (n) => {
    pool.give(a); // unpinned by now: it may go back
    return `value ${n}`;
  });
  pool.give(a); // answered while the work still runs: it must not be reused
  t.equal(pool.freeCount, 0, 'pinned while the work runs');
  release(7);
  t.equal(await mapped, 'value 7');
  t.equal(pool.freeCount, 1, 'given back from inside the mapping');
  const b = pool.take(MEDIUM_BUFFER_SIZE)!;
  await t.rejects(pool.whilePinned(b, () => Promise.reject(new Error('boom')), () => 'never'), /boom/);
  await t.rejects(async () => pool.whilePinned(b, () => { throw new Error('sync'); }), /sync/);
  pool.give(b);
  t.equal(pool.freeCount, 1, 'unpinned after a rejection and after a throw');
  t.equal(await pool.whilePinned(Buffer.alloc(8), async () => 2, (n) => n * 3), 6, 'memory not from the pool: mapped all the same');
  t.equal(await pool.whilePinned(b, async () => 'plain'), 'plain', 'without a mapping: the value itself');
});

t.test('the free list is bounded and let go when idle', async (t) => {
  const pool = new LargeBufferPool({ maxFree: 2, idleMs: 50 });
  const taken = [pool.take(LARGE_BUFFER_SIZE)!, pool.take(LARGE_BUFFER_SIZE)!, pool.take(LARGE_BUFFER_SIZE)!];
  for (const b of taken) pool.give(b);
  t.equal(pool.freeCount, 2);
  await new Promise((resolve) => setTimeout(resolve, 150));
  t.equal(pool.freeCount, 0);
});

t.test('stats: buffers made, free, let go by reason, and live until the garbage collector frees them', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const pool = new LargeBufferPool({ maxFree: 1, idleMs: 1000 }); // long enough for the collections below
  // In a function of its own: an async test's locals live on across its awaits, and the buffers
  // must have no reference left but the pool's once it returns.
  ((): void => {
    const [a, pinned, full, medium] = [pool.take(LARGE_BUFFER_SIZE)!, pool.take(LARGE_BUFFER_SIZE)!, pool.take(LARGE_BUFFER_SIZE)!, pool.take(4096)!];
    pool.pin(pinned);
    pool.give(pinned); // a native call still uses it: let go
    pool.give(a);
    pool.give(full); // the free list holds one large buffer
    pool.give(a); // twice: not counted again
    pool.give(Buffer.allocUnsafeSlow(LARGE_BUFFER_SIZE)); // not the pool's: not counted
    pool.unpin(pinned);
    t.equal(medium.length, MEDIUM_BUFFER_SIZE);
  })();
  t.same(pool.stats(), {
    medium: { made: 1, live: 1, free: 0, dropped: { full: 0, pinned: 0, idle: 0 } },
    large: { made: 3, live: 3, free: 1, dropped: { full: 1, pinned: 1, idle: 0 } },
  });

  // Only the pool's free list holds a buffer now: live falls to what it holds.
  const collected = async (want: { medium: number; large: number }): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10)); // finalizers run as tasks after a collection
      const s = pool.stats();
      if (s.medium.live === want.medium && s.large.live === want.large) return;
    }
  };
  await collected({ medium: 0, large: 1 });
  t.match(pool.stats(), { medium: { made: 1, live: 0, free: 0 }, large: { made: 3, live: 1, free: 1 } }, 'garbage collected; the free buffer lives on');
  await new Promise((resolve) => setTimeout(resolve, 1100)); // idle: the free list is let go
  await collected({ medium: 0, large: 0 });
  t.same(pool.stats().large, { made: 3, live: 0, free: 0, dropped: { full: 1, pinned: 1, idle: 1 } });
});

t.test('XDR writers grow into pooled buffers; large records are gathered into one', async (t) => {
  const w = new XdrWriter(512);
  w.ensure(LARGE_BUFFER_MIN);
  pinnedCheck(t, w.buffer);
  const w2 = new XdrWriter(512);
  w2.ensure(100);
  t.equal(w2.buffer.length, 512, 'small replies do not touch the pool');

  const records: Buffer[] = [];
  const reader = new RecordReader((r) => records.push(r));
  const body = Buffer.alloc(LARGE_BUFFER_MIN + 10, 7);
  const mark = Buffer.alloc(4);
  mark.writeUInt32BE((0x8000_0000 | body.length) >>> 0);
  const wire = Buffer.concat([mark, body]);
  for (let at = 0; at < wire.length; at += 4096) reader.push(wire.subarray(at, at + 4096));
  t.equal(records.length, 1);
  t.same(records[0], body);
  pinnedCheck(t, records[0]!);
});

function pinnedCheck(t: Test, view: Buffer): void {
  // Pooled memory is the pool's size class; a pin keeps it out of the free list.
  t.ok(view.buffer.byteLength === LARGE_BUFFER_SIZE || view.buffer.byteLength === MEDIUM_BUFFER_SIZE, 'from the pool');
  const before = largeBuffers.freeCount;
  largeBuffers.pin(view);
  largeBuffers.give(view);
  t.equal(largeBuffers.freeCount, before, 'pinned: not taken back');
  largeBuffers.unpin(view);
  largeBuffers.give(view);
  t.equal(largeBuffers.freeCount, before + 1, 'unpinned: taken back');
}
