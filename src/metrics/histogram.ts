// A histogram observed once per RPC call, exposed through prom-client's registry.
//
// prom-client's Histogram.observe() makes a closure, a label/value pair object and a hash string
// of the label values on every call, and walks the label names to validate them: a few hundred
// bytes of garbage per request on the daemon's hottest path, where young-generation collections
// set the p99 latency (BENCHMARKS.md). Here a series is found by its label object's identity (the
// caller keeps one object per label set, as registry.ts does) and counted in a Float64Array.
// Scrapes see the same text as prom-client's own Histogram would give (test/metrics/histogram.test.ts).
import type { Registry } from 'prom-client';

interface Series {
  readonly labels: Readonly<Record<string, string>>;
  /** Observations per bucket (not cumulative); the last slot is above every bound (+Inf only). */
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

/** One line of the exposition as prom-client's Histogram hands it to the registry: `le` first, then the series' labels. */
interface ExportedValue {
  labels: Record<string, string | number>;
  sharedLabels: Readonly<Record<string, string>>;
  value: number;
  metricName: string;
  exemplar: null | undefined;
}

interface Exported<V> {
  name: string;
  help: string;
  type: string;
  values: V[];
  aggregator: string;
}

export interface FastHistogramOptions {
  name: string;
  help: string;
  /** The labels of every series, as prom-client's metrics declare them (tools read them from the registry). */
  labelNames: readonly string[];
  /** Upper bounds, ascending, without +Inf. */
  buckets: readonly number[];
  registers: readonly Registry[];
}

export class FastHistogram<L extends Readonly<Record<string, string>>> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly bounds: Float64Array;
  private readonly series = new Map<L, Series>();

  constructor(options: FastHistogramOptions) {
    const sorted = options.buckets.every((b, i) => i === 0 || b > options.buckets[i - 1]!);
    if (!sorted || options.buckets.length === 0) throw new RangeError(`${options.name}: buckets must be ascending and not empty`);
    this.name = options.name;
    this.help = options.help;
    this.labelNames = [...options.labelNames];
    this.bounds = Float64Array.from(options.buckets);
    // prom-client's registry takes any object with a name and get() (registerMetric).
    for (const registry of options.registers) registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** Counts `value` (seconds) under `labels`; the same object for the same labels, every time. */
  observe(labels: L, value: number): void {
    if (!Number.isFinite(value)) return;
    let series = this.series.get(labels);
    if (series === undefined) {
      series = { labels, counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 };
      this.series.set(labels, series);
    }
    // Buckets are few (a dozen): a linear scan from the bottom, where most calls land.
    const bounds = this.bounds;
    let at = 0;
    while (at < bounds.length && value > bounds[at]!) at++;
    series.counts[at]! += 1;
    series.sum += value;
    series.count += 1;
  }

  /** Forget every series (prom-client's reset()). */
  reset(): void {
    this.series.clear();
  }

  /** What the registry renders, as prom-client's Histogram gives it: cumulative buckets, +Inf, sum, count. */
  async getForPromString(): Promise<Exported<ExportedValue>> {
    const values: ExportedValue[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const series of this.series.values()) {
      const shared = series.labels;
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += series.counts[i]!;
        values.push({ labels: { le: this.bounds[i]! }, sharedLabels: shared, value: cumulative, metricName: bucketName, exemplar: null });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: shared, value: series.count, metricName: bucketName, exemplar: null });
      values.push({ labels: {}, sharedLabels: shared, value: series.sum, metricName: `${this.name}_sum`, exemplar: undefined });
      values.push({ labels: {}, sharedLabels: shared, value: series.count, metricName: `${this.name}_count`, exemplar: undefined });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** The same with each value's labels in one object (getMetricsAsJSON). */
  async get(): Promise<Exported<Omit<ExportedValue, 'sharedLabels'>>> {
    const exported = await this.getForPromString();
    return { ...exported, values: exported.values.map(({ sharedLabels, labels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } })) };
  }
}
