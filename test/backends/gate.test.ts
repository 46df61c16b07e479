// BackendGate on its own: slots, queue, and deadlines kept by one timer per gate.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackendGate, type GateOutcome } from '../../src/backends/gate.js';

const never = (): Promise<never> => new Promise(() => undefined);

t.test('each call times out at its own deadline, running or queued, and slots stay held', async (t) => {
  let refused = 0;
  const gate = new BackendGate({ limit: 1, timeoutMs: 200, onRefused: () => refused++ });
  const t0 = Date.now();
  const answeredAt: number[] = [];
  const track = (p: Promise<GateOutcome<unknown>>, i: number) =>
    p.then((o) => {
      answeredAt[i] = Date.now() - t0;
      return o;
    });
  const a = track(gate.run(never), 0); // runs, stuck
  await sleep(100);
  const b = track(gate.run(never), 1); // queued behind it
  t.same(await a, { ok: false, reason: 'timeout' });
  t.ok(answeredAt[0]! >= 190 && answeredAt[0]! < 290, `first at its deadline (${answeredAt[0]} ms)`);
  t.same(await b, { ok: false, reason: 'timeout' });
  t.ok(answeredAt[1]! >= 290 && answeredAt[1]! < 400, `second at its own, later deadline (${answeredAt[1]} ms)`);
  t.equal(gate.inflight, 1, 'the stuck call keeps its slot; the queued one never started');
  t.equal(refused, 2);
});

t.test('fast calls are answered with their values; thousands in a row leave nothing pending', async (t) => {
  const gate = new BackendGate({ limit: 4, timeoutMs: 1000 });
  for (let round = 0; round < 10; round++) {
    // 500 at once: within the slots plus the default queue bound (1,024)
    const results = await Promise.all(Array.from({ length: 500 }, (_, i) => gate.run(async () => i)));
    t.ok(results.every((r, i) => r.ok && r.value === i), `round ${round}`);
  }
  const over = await Promise.all(Array.from({ length: 1100 }, () => gate.run(async () => 0)));
  t.ok(over.some((r) => !r.ok && r.reason === 'overloaded'), 'past the queue bound: overloaded at once');
  t.equal(gate.inflight, 0);
  const failed = await gate.run(async () => {
    throw new Error('boom');
  }).catch((e: Error) => e.message);
  t.equal(failed, 'boom', 'a failing call rejects with its error');
});

t.test('a slow call among many fast ones: the fast ones are not held to its deadline', async (t) => {
  const gate = new BackendGate({ limit: 8, timeoutMs: 300 });
  let release!: () => void;
  const slow = gate.run(() => new Promise<string>((resolve) => (release = () => resolve('slow'))));
  for (let round = 0; round < 20; round++) {
    const fast = await Promise.all(Array.from({ length: 100 }, (_, i) => gate.run(async () => i)));
    t.ok(fast.every((r) => r.ok), `round ${round}`);
  }
  release();
  t.same(await slow, { ok: true, value: 'slow' });
  t.equal(gate.inflight, 0);
});

t.test('oldestRunningSince: the start of the oldest call still running, past thousands that settled behind it', async (t) => {
  const gate = new BackendGate({ limit: 8, timeoutMs: 60_000 });
  t.equal(gate.oldestRunningSince(), undefined, 'nothing running');
  const before = Date.now();
  let releaseFirst!: () => void;
  const first = gate.run(() => new Promise<void>((resolve) => (releaseFirst = resolve)));
  await sleep(20);
  let releaseSecond!: () => void;
  const second = gate.run(() => new Promise<void>((resolve) => (releaseSecond = resolve)));
  const firstAt = gate.oldestRunningSince()!;
  t.ok(firstAt >= before && firstAt <= before + 15, `the first call's start (${firstAt - before} ms after)`);
  // enough settled calls behind the two slow ones to make the gate compact its list
  for (let round = 0; round < 30; round++) await Promise.all(Array.from({ length: 100 }, () => gate.run(async () => 0)));
  t.equal(gate.oldestRunningSince(), firstAt, 'still the first call while it runs');
  releaseFirst();
  await first;
  const secondAt = gate.oldestRunningSince()!;
  t.ok(secondAt >= firstAt + 15, 'then the second');
  releaseSecond();
  await second;
  t.equal(gate.oldestRunningSince(), undefined, 'nothing running once both returned');
  t.equal(gate.inflight, 0);
});

t.test('onSettled: once per call, when its work settles or once it can never run', async (t) => {
  const gate = new BackendGate({ limit: 1, timeoutMs: 150, queueLimit: 1 });
  const settled: string[] = [];
  let release!: () => void;
  const stuck = gate.run(() => new Promise<void>((resolve) => (release = resolve)), undefined, () => settled.push('stuck'));
  const queued = gate.run(async () => 'never', undefined, () => settled.push('queued'));
  const refused = await gate.run(async () => 'never', undefined, () => settled.push('refused'));
  t.same(refused, { ok: false, reason: 'overloaded' });
  t.same(settled, ['refused'], 'refused: at once, its work never ran');
  t.same(await queued, { ok: false, reason: 'timeout' });
  t.same(settled, ['refused', 'queued'], 'expired while queued: at the deadline');
  t.same(await stuck, { ok: false, reason: 'timeout' });
  t.same(settled, ['refused', 'queued'], 'a running call answered at its deadline has not settled yet');
  release();
  await sleep(10);
  t.same(settled, ['refused', 'queued', 'stuck'], 'it is told once its work settles, late');

  const failing = gate.run(() => Promise.reject(new Error('boom')), undefined, () => settled.push('rejected'));
  await t.rejects(failing, { message: 'boom' });
  const throwing = gate.run(() => {
    throw new Error('sync');
  }, undefined, () => settled.push('threw'));
  await t.rejects(throwing, { message: 'sync' });
  await sleep(10);
  t.same(settled.slice(3), ['rejected', 'threw'], 'a rejected or throwing work is settled too');
  gate.suspended = true;
  await gate.run(async () => 0, undefined, () => settled.push('suspended'));
  t.equal(settled.at(-1), 'suspended', 'refused while suspended: at once');
  t.equal(settled.length, 6, 'never twice');
});
