// A tiny parser for the Prometheus text exposition format (version 0.0.4): enough to assert exact
// values in tests. One sample per line: name, optional {labels}, value.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseValue(text: string): number {
  // Prometheus parses values with Go's ParseFloat: Inf and NaN in any case (prom-client writes "Nan").
  switch (text.toLowerCase()) {
    case '+inf':
    case 'inf':
      return Infinity;
    case '-inf':
      return -Infinity;
    case 'nan':
      return NaN;
    default: {
      const value = Number(text);
      if (Number.isNaN(value)) throw new Error(`not a sample value: ${text}`);
      return value;
    }
  }
}

export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    let at = 0;
    while (at < line.length && /[a-zA-Z0-9_:]/.test(line[at]!)) at++;
    const name = line.slice(0, at);
    const labels: Record<string, string> = {};
    if (line[at] === '{') {
      at++;
      while (line[at] !== '}') {
        const eq = line.indexOf('=', at);
        const key = line.slice(at, eq).trim();
        if (line[eq + 1] !== '"') throw new Error(`bad label in: ${line}`);
        let value = '';
        let i = eq + 2;
        for (; line[i] !== '"'; i++) {
          if (i >= line.length) throw new Error(`unterminated label in: ${line}`);
          if (line[i] === '\\') {
            i++;
            value += line[i] === 'n' ? '\n' : line[i];
          } else {
            value += line[i];
          }
        }
        labels[key] = value;
        at = i + 1;
        if (line[at] === ',') at++;
      }
      at++;
    }
    const rest = line.slice(at).trim().split(/\s+/);
    samples.push({ name, labels, value: parseValue(rest[0]!) });
  }
  return samples;
}

/** Samples named `name` whose labels include `labels`. */
export function find(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The one sample named `name` with exactly these labels (undefined when absent). */
export function value(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const keys = Object.keys(labels);
  const hit = samples.find(
    (s) => s.name === name && Object.keys(s.labels).length === keys.length && keys.every((k) => s.labels[k] === labels[k]),
  );
  return hit?.value;
}

/** The series of `name` as a map "k=v,k=v" (sorted keys) -> value, for exact whole-set comparisons. */
export function series(samples: readonly Sample[], name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) {
    if (s.name !== name) continue;
    const key = Object.keys(s.labels)
      .sort()
      .map((k) => `${k}=${s.labels[k]}`)
      .join(',');
    out[key] = s.value;
  }
  return out;
}
