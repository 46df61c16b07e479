// FastHistogram stands in for prom-client's Histogram on the per-call path: a scrape must read the
// same, line for line, as prom-client's own would for the same observations.
import t from 'tap';
import { Histogram, Registry } from 'prom-client';
import { FastHistogram } from '../../src/metrics/histogram.js';
import { LATENCY_BUCKETS } from '../../src/metrics/registry.js';

t.test('the exposition is the one prom-client gives for the same observations', async (t) => {
  const ours = new Registry();
  const theirs = new Registry();
  const help = 'Time from receiving an RPC call to its reply being ready';
  const fast = new FastHistogram<{ program: string; procedure: string }>({
    name: 'h_seconds', help, labelNames: ['program', 'procedure'], buckets: LATENCY_BUCKETS, registers: [ours],
  });
  const reference = new Histogram({ name: 'h_seconds', help, labelNames: ['program', 'procedure'], buckets: [...LATENCY_BUCKETS], registers: [theirs] });
  const read = { program: 'nfs3', procedure: 'read' };
  const getattr = { program: 'nfs3', procedure: 'getattr' };
  // Every bound exactly (le is inclusive), between bounds, below the first and above the last.
  const values = [0, 1e-7, ...LATENCY_BUCKETS, ...LATENCY_BUCKETS.map((b) => b * 1.5), 1e6];
  for (const [i, v] of values.entries()) {
    const labels = i % 3 === 0 ? getattr : read;
    fast.observe(labels, v);
    reference.observe({ ...labels }, v);
  }
  t.equal(await ours.metrics(), await theirs.metrics());
  t.same(await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON(), 'and as JSON');
  t.same(fast.labelNames, reference.labelNames, 'the label names, as tools read them from the registry');

  ours.resetMetrics();
  theirs.resetMetrics();
  t.equal(await ours.metrics(), await theirs.metrics(), 'reset empties both');
  fast.observe(read, Number.NaN);
  t.equal(await ours.metrics(), await theirs.metrics(), 'a value that is not a number is not counted');
});

t.test('buckets must ascend', async (t) => {
  t.throws(() => new FastHistogram({ name: 'x', help: 'x', labelNames: [], buckets: [0.1, 0.1], registers: [] }), RangeError);
  t.throws(() => new FastHistogram({ name: 'x', help: 'x', labelNames: [], buckets: [], registers: [] }), RangeError);
});
