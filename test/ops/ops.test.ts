// The operator kit: ops/grafana/manila-gateway.json and ops/prometheus/alerts.yml.
//
// - Both files parse and have the expected structure.
// - Every PromQL expression in them names only metrics the gateway exports, with only labels those
//   metrics have. The exported metrics are read from the code at test time: the registry that
//   src/metrics/registry.ts builds (with every optional source given, so every gauge exists), or,
//   failing that, the names grepped out of src/metrics/*.ts, or, failing that, the list of the
//   issue (marked todo).
// - With promtool on PATH (Debian: package `prometheus`), `promtool check rules` passes, a unit test
//   shows each alert firing on the data it is for and staying quiet otherwise, and every dashboard
//   query goes through Prometheus' own parser.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const dashboardPath = path.join(repoRoot, 'ops/grafana/manila-gateway.json');
const alertsPath = path.join(repoRoot, 'ops/prometheus/alerts.yml');
const metricsDir = path.join(repoRoot, 'src/metrics');

// ---- what the gateway exports ------------------------------------------------------------------

type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
interface Exported {
  /** metric family name -> its type and label names (labels undefined when unknown) */
  families: Map<string, { type: MetricType; labels?: string[] }>;
  source: 'registry' | 'grep' | 'issue';
  /** An nfsstat3 number -> the status label value, when the code exports that mapping. */
  statusLabel?: (status: number) => string;
}

/** The list of the issue, used only when src/metrics cannot be read. */
const ISSUE_LIST: Array<[string, MetricType, string[]]> = [
  ['rpc_requests_total', 'counter', ['program', 'procedure', 'outcome']],
  ['rpc_request_duration_seconds', 'histogram', ['program', 'procedure']],
  ['nfs_ops_total', 'counter', ['share', 'procedure', 'status']],
  ['read_bytes_total', 'counter', ['share']],
  ['written_bytes_total', 'counter', ['share']],
  ['connections', 'gauge', ['transport']],
  ['connections_accepted_total', 'counter', ['transport']],
  ['grants', 'gauge', ['source']],
  ['grants_failed', 'gauge', []],
  ['controller_connected', 'gauge', []],
  ['controller_applied_revision', 'gauge', []],
  ['controller_state', 'gauge', ['state']],
  ['backend_up', 'gauge', ['backend', 'type']],
  ['build_info', 'gauge', ['version']],
];

/** prom-client's default process metrics under a prefix, as prom-client itself names them. */
async function defaultMetrics(prefix: string): Promise<Map<string, { type: MetricType; labels?: string[] }>> {
  const client = await import('prom-client');
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix });
  const out = new Map<string, { type: MetricType; labels?: string[] }>();
  for (const m of await registry.getMetricsAsJSON()) {
    const labels = new Set<string>();
    for (const v of m.values) for (const l of Object.keys(v.labels ?? {})) labels.add(l);
    out.set(m.name, { type: String(m.type) as MetricType, labels: [...labels] });
  }
  registry.clear();
  return out;
}

/** The registry src/metrics/registry.ts builds, with every optional source, so every family exists. */
async function fromRegistry(): Promise<Exported | undefined> {
  const file = path.join(metricsDir, 'registry.ts');
  if (!existsSync(file)) return undefined;
  let mod: Record<string, unknown>;
  try {
    mod = (await import('../../src/metrics/registry.js')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const create = mod.createMetrics as ((sources: object) => { registry: import('prom-client').Registry }) | undefined;
  if (typeof create !== 'function') return undefined;
  const gm = create({
    version: 'test',
    connectionsByTransport: () => ({ tcp: 1 }),
    grantsBySource: () => ({ static: 1 }),
    grantsFailed: () => 0,
    controller: () => ({ state: 'connected', appliedRevision: 1 }),
    backends: () => [{ id: 'b', type: 'local', up: true }],
  });
  const families = new Map<string, { type: MetricType; labels?: string[] }>();
  for (const m of gm.registry.getMetricsAsArray() as unknown as Array<{ name: string; labelNames?: string[] }>) {
    families.set(m.name, { type: 'untyped', labels: [...(m.labelNames ?? [])] });
  }
  for (const m of await gm.registry.getMetricsAsJSON()) {
    const f = families.get(m.name);
    if (!f) continue;
    f.type = String(m.type) as MetricType;
    // default metrics (and some collectors) declare no labelNames but set labels: take those seen
    const seen = new Set(f.labels);
    for (const v of m.values) for (const l of Object.keys(v.labels ?? {})) seen.add(l);
    f.labels = [...seen].filter((l) => l !== 'le' && l !== 'quantile');
  }
  gm.registry.clear();
  const statusLabel = typeof mod.nfsStatusLabel === 'function' ? (mod.nfsStatusLabel as (s: number) => string) : undefined;
  return { families, source: 'registry', ...(statusLabel ? { statusLabel } : {}) };
}

/**
 * The names grepped out of src/metrics/*.ts. Names may be written whole ('manila_gateway_x') or as
 * `${PREFIX}x` with `const PREFIX = 'manila_gateway_'`: such constants are substituted first.
 */
async function fromGrep(): Promise<Exported | undefined> {
  if (!existsSync(metricsDir)) return undefined;
  const files = readdirSync(metricsDir).filter((f) => f.endsWith('.ts'));
  if (files.length === 0) return undefined;
  let text = files.map((f) => readFileSync(path.join(metricsDir, f), 'utf8')).join('\n');
  for (const m of text.matchAll(/const\s+([A-Za-z_$][\w$]*)\s*(?::\s*string\s*)?=\s*['"`](manila_gateway_[a-z0-9_]*)['"`]/g)) {
    text = text.split('${' + m[1] + '}').join(m[2]!);
  }
  const families = new Map<string, { type: MetricType; labels?: string[] }>();
  const typed = /new\s+(Counter|Gauge|Histogram|Summary)\b[^({]*\(\s*\{\s*name:\s*['"`](manila_gateway_[a-z0-9_]+)['"`]/g;
  for (const m of text.matchAll(typed)) families.set(m[2]!, { type: m[1]!.toLowerCase() as MetricType });
  for (const m of text.matchAll(/['"`](manila_gateway_[a-z0-9_]+)['"`]/g)) {
    if (!families.has(m[1]!)) families.set(m[1]!, { type: 'untyped' });
  }
  if (families.size === 0) return undefined;
  if (/collectDefaultMetrics/.test(text)) {
    for (const [name, f] of await defaultMetrics('manila_gateway_')) families.set(name, f);
  }
  return { families, source: 'grep' };
}

async function fromIssue(): Promise<Exported> {
  const families = new Map<string, { type: MetricType; labels?: string[] }>();
  for (const [name, type, labels] of ISSUE_LIST) families.set(`manila_gateway_${name}`, { type, labels });
  for (const [name, f] of await defaultMetrics('manila_gateway_')) families.set(name, f);
  return { families, source: 'issue' };
}

/** The series names a family exposes: histograms add _bucket, _sum and _count. */
function seriesNames(exported: Exported): Map<string, { family: string; labels?: string[]; bucket: boolean }> {
  const out = new Map<string, { family: string; labels?: string[]; bucket: boolean }>();
  for (const [name, f] of exported.families) {
    const labels = f.labels;
    out.set(name, { family: name, ...(labels ? { labels } : {}), bucket: false });
    if (f.type === 'histogram' || f.type === 'summary' || f.type === 'untyped') {
      out.set(`${name}_sum`, { family: name, ...(labels ? { labels } : {}), bucket: false });
      out.set(`${name}_count`, { family: name, ...(labels ? { labels } : {}), bucket: false });
    }
    if (f.type === 'histogram' || f.type === 'untyped') out.set(`${name}_bucket`, { family: name, ...(labels ? { labels } : {}), bucket: true });
  }
  return out;
}

/** Series every Prometheus adds to each target it scrapes. */
const SCRAPE_SERIES = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);
const TARGET_LABELS = new Set(['instance', 'job']);

// ---- a small PromQL reader: enough to find metric names, matchers and grouping labels -----------

interface Matcher { label: string; op: string; value: string }
interface Selector { name: string; matchers: Matcher[] }
interface PromqlRefs { selectors: Selector[]; grouping: string[]; problems: string[] }

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan', 'atan2']);

function promqlRefs(expr: string): PromqlRefs {
  const problems: string[] = [];
  // balance of brackets and quotes, outside strings
  const stack: string[] = [];
  let inString = false;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i]!;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if ('([{'.includes(c)) stack.push(c);
    else if (')]}'.includes(c)) {
      const open = stack.pop();
      if (open !== { ')': '(', ']': '[', '}': '{' }[c]) problems.push(`unbalanced '${c}' at ${i}`);
    }
  }
  if (inString) problems.push('unterminated string');
  if (stack.length) problems.push(`unclosed '${stack.join('')}'`);

  let rest = expr.replace(/\[[^\]]*\]/g, ' '); // range and subquery durations
  const selectors: Selector[] = [];
  rest = rest.replace(/([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\}/g, (_all, name: string | undefined, body: string) => {
    const matchers: Matcher[] = [];
    const leftover = body.replace(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g, (_m, label: string, op: string, value: string) => {
      matchers.push({ label, op, value });
      return '';
    });
    if (leftover.replace(/[\s,]/g, '') !== '') problems.push(`unreadable matchers {${body}}`);
    const named = matchers.find((m) => m.label === '__name__' && m.op === '=');
    selectors.push({ name: name ?? named?.value ?? '', matchers });
    return ' ';
  });
  const grouping: string[] = [];
  rest = rest.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_m, _kw: string, labels: string) => {
    for (const l of labels.split(',').map((s) => s.trim()).filter(Boolean)) grouping.push(l);
    return ' ';
  });
  rest = rest.replace(/"(?:[^"\\]|\\.)*"/g, ' ');
  // what is left: functions and aggregations (followed by '('), keywords, numbers, and bare metric names
  for (const m of rest.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    if (m[2] || KEYWORDS.has(m[1]!.toLowerCase())) continue;
    selectors.push({ name: m[1]!, matchers: [] });
  }
  return { selectors, grouping, problems };
}

/** Grafana's variables, replaced by what they stand for at query time. */
function grafanaToPromql(expr: string): string {
  return expr.replace(/\$__rate_interval|\$__interval|\$__range/g, '5m').replace(/\$\{?instance\}?/g, '.+');
}

/**
 * Checks one expression against what is exported; returns the problems. `instanceFilter`: every
 * gateway selector must filter on the dashboard's instance variable.
 */
function checkExpr(expr: string, series: ReturnType<typeof seriesNames>, exported: Exported, instanceFilter: boolean): string[] {
  const refs = promqlRefs(expr);
  const problems = [...refs.problems];
  const labelsInExpr = new Set<string>([...TARGET_LABELS]);
  for (const sel of refs.selectors) {
    if (sel.name === '') {
      problems.push('a selector without a metric name');
      continue;
    }
    if (SCRAPE_SERIES.has(sel.name)) {
      for (const m of sel.matchers) if (!TARGET_LABELS.has(m.label)) problems.push(`${sel.name} has no label ${m.label}`);
    } else {
      const s = series.get(sel.name);
      if (!s) {
        problems.push(`${sel.name} is not exported (${exported.source})`);
        continue;
      }
      const allowed = new Set<string>([...TARGET_LABELS, ...(s.labels ?? []), ...(s.bucket ? ['le'] : [])]);
      for (const l of allowed) labelsInExpr.add(l);
      for (const m of sel.matchers) {
        if (s.labels && !allowed.has(m.label)) problems.push(`${sel.name} has no label ${m.label}`);
        if (m.label === 'status' && exported.statusLabel) {
          const known = new Set<string>();
          for (let code = 0; code <= 10100; code++) known.add(exported.statusLabel(code));
          for (const v of m.value.split('|')) if (!known.has(v)) problems.push(`status="${v}" is never exported`);
        }
      }
    }
    if (instanceFilter && !sel.matchers.some((m) => m.label === 'instance' && m.value.includes('$instance'))) {
      problems.push(`${sel.name} does not filter on $instance`);
    }
  }
  for (const l of refs.grouping) if (!labelsInExpr.has(l)) problems.push(`grouping label ${l} is on no metric of the expression`);
  return problems;
}

// ---- promtool ----------------------------------------------------------------------------------

function promtool(): string | undefined {
  const r = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? 'promtool' : undefined;
}

// ---- the tests ---------------------------------------------------------------------------------

const dashboard = JSON.parse(readFileSync(dashboardPath, 'utf8')) as {
  schemaVersion: number; uid: string; title: string;
  templating: { list: Array<{ name: string; type: string; query?: unknown }> };
  __inputs?: Array<{ name: string; pluginId: string }>;
  panels: Array<{
    id: number; type: string; title: string; gridPos: { x: number; y: number; w: number; h: number };
    datasource?: { uid?: string };
    targets?: Array<{ expr?: string; refId?: string; datasource?: { uid?: string } }>;
  }>;
};
const alerts = parseYaml(readFileSync(alertsPath, 'utf8')) as {
  groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }> }>;
};
const dataPanels = dashboard.panels.filter((p) => p.type !== 'row');
const dashboardExprs = dataPanels.flatMap((p) => (p.targets ?? []).map((tg) => ({ panel: p.title, expr: tg.expr ?? '' })));
const alertRules = alerts.groups.flatMap((g) => g.rules);

t.test('the dashboard is a Grafana 10 dashboard', async (t) => {
  t.ok(dashboard.schemaVersion >= 36 && dashboard.schemaVersion <= 41, `schemaVersion ${dashboard.schemaVersion}`);
  t.match(dashboard.uid, /^[A-Za-z0-9_-]{1,40}$/);
  t.ok(dashboard.title);
  const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
  const dsVar = vars.get('datasource');
  const dsInput = dashboard.__inputs?.find((i) => i.name === 'DS_PROMETHEUS' && i.pluginId === 'prometheus');
  t.ok((dsVar?.type === 'datasource' && dsVar.query === 'prometheus') || dsInput, 'a Prometheus datasource variable or input');
  const dsRef = dsVar ? '${datasource}' : '${DS_PROMETHEUS}';
  t.equal(vars.get('instance')?.type, 'query', 'an instance variable');
  t.match(JSON.stringify(vars.get('instance')?.query), /label_values\(manila_gateway_[a-z_]+, *instance\)/);

  const ids = dashboard.panels.map((p) => p.id);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  for (const p of dataPanels) {
    t.ok(p.targets && p.targets.length > 0, `${p.title}: has targets`);
    const refIds = (p.targets ?? []).map((tg) => tg.refId);
    t.equal(new Set(refIds).size, refIds.length, `${p.title}: refIds unique`);
    for (const tg of p.targets ?? []) {
      t.ok(tg.expr && tg.expr.trim(), `${p.title} ${tg.refId}: has an expression`);
      t.equal(tg.datasource?.uid ?? p.datasource?.uid, dsRef, `${p.title} ${tg.refId}: uses the datasource variable`);
    }
  }
  // the layout: inside 24 columns, no two panels overlapping
  const boxes = dashboard.panels.map((p) => ({ title: p.title, ...p.gridPos }));
  for (const b of boxes) t.ok(b.x >= 0 && b.w > 0 && b.x + b.w <= 24 && b.h > 0, `${b.title}: inside the grid`);
  const overlaps: string[] = [];
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i]!, b = boxes[j]!;
      if (a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h) overlaps.push(`${a.title} / ${b.title}`);
    }
  }
  t.same(overlaps, [], 'no panels overlap');
});

t.test('the dashboard shows what operators need', async (t) => {
  const all = dashboardExprs.map((e) => e.expr).join('\n');
  const wanted: Array<[string, RegExp]> = [
    ['read throughput', /rate\(manila_gateway_read_bytes_total/],
    ['write throughput', /rate\(manila_gateway_written_bytes_total/],
    ['top shares', /topk\(\d+, *sum by \(share\) \(rate\(manila_gateway_(read|written)_bytes_total/],
    ['ops by procedure', /sum by \(procedure\) \(rate\(manila_gateway_nfs_ops_total/],
    ['p50 latency', /histogram_quantile\(0\.5, *sum by \([^)]*\ble\b[^)]*\) \(rate\(manila_gateway_rpc_request_duration_seconds_bucket/],
    ['p99 latency', /histogram_quantile\(0\.99, *sum by \([^)]*\ble\b[^)]*\) \(rate\(manila_gateway_rpc_request_duration_seconds_bucket/],
    ['error ratio by status', /sum by \(status\) \(rate\(manila_gateway_nfs_ops_total/],
    ['connections by transport', /sum by \(transport\) \(manila_gateway_connections\{/],
    ['grants', /manila_gateway_grants\{/],
    ['controller connected', /manila_gateway_controller_connected\{/],
    ['controller revision', /manila_gateway_controller_applied_revision\{/],
    ['backends up', /manila_gateway_backend_up\{/],
    ['RSS', /manila_gateway_process_resident_memory_bytes\{/],
    ['event loop lag', /manila_gateway_nodejs_eventloop_lag_seconds\{/],
    ['open fds', /manila_gateway_process_open_fds\{/],
  ];
  for (const [what, re] of wanted) t.match(all, re, what);
});

t.test('the alert rules have the expected shape', async (t) => {
  t.ok(Array.isArray(alerts.groups) && alerts.groups.length > 0, 'groups');
  const names = new Set<string>();
  for (const g of alerts.groups) {
    t.ok(g.name, 'group has a name');
    t.ok(Array.isArray(g.rules) && g.rules.length > 0, `${g.name}: rules`);
  }
  for (const r of alertRules) {
    const name = r.alert ?? '';
    t.match(name, /^ManilaGateway[A-Z][A-Za-z0-9]+$/, `alert name ${name}`);
    t.notOk(names.has(name), `${name}: unique`);
    names.add(name);
    t.type(r.expr, 'string', `${name}: expr`);
    t.match(r.for ?? '', /^\d+[smh]$/, `${name}: for`);
    t.ok(['critical', 'warning', 'info'].includes(r.labels?.severity ?? ''), `${name}: severity`);
    t.ok(r.annotations?.summary && r.annotations.summary.length > 10, `${name}: summary`);
    t.ok(r.annotations?.description && r.annotations.description.length > 20, `${name}: description`);
  }
  // what each condition of the issue is alerted on
  const byExpr = (re: RegExp) => alertRules.filter((r) => re.test(r.expr));
  const wanted: Array<[string, RegExp, string]> = [
    ['gateway down', /^up\{[^}]*\} == 0$/, '2m'],
    ['backend down', /manila_gateway_backend_up == 0/, '5m'],
    ['controller disconnected', /manila_gateway_controller_connected == 0/, '5m'],
    ['NFS error ratio without NOENT', /manila_gateway_nfs_ops_total\{status!~"[^"]*NFS3ERR_NOENT[^"]*"\}/, '10m'],
    ['p99 latency over 1 s', /histogram_quantile\(0\.99,[\s\S]*manila_gateway_rpc_request_duration_seconds_bucket[\s\S]*\) > 1\s*$/, '10m'],
    ['RSS over 1 GiB', /manila_gateway_process_resident_memory_bytes > 1073741824/, ''],
    ['event loop lag over 0.5 s', /manila_gateway_nodejs_eventloop_lag_seconds > 0\.5/, ''],
    ['fds near the limit', /manila_gateway_process_open_fds \/ manila_gateway_process_max_fds > 0\.8/, ''],
    ['grants failed', /manila_gateway_grants_failed > 0/, '10m'],
  ];
  for (const [what, re, forDuration] of wanted) {
    const rules = byExpr(re);
    t.equal(rules.length, 1, `one alert for ${what}`);
    if (forDuration && rules[0]) t.equal(rules[0].for, forDuration, `${what}: for ${forDuration}`);
  }
});

t.test('every expression names only exported metrics and labels', async (t) => {
  const exported = (await fromRegistry()) ?? (await fromGrep()) ?? (await fromIssue());
  t.comment(`exported metrics read from: ${exported.source} (${exported.families.size} families)`);
  if (exported.source === 'issue') {
    t.pass('compared with the names src/metrics/*.ts exports', { todo: 'src/metrics is not there yet: compared with the list of the issue' });
  } else if (exported.source === 'grep') {
    t.pass('labels compared with the registry', { todo: 'src/metrics/registry.ts createMetrics could not be loaded: names grepped, labels not checked' });
  }
  // every family the issue names must be exported under that name
  for (const [name] of ISSUE_LIST) t.ok(exported.families.has(`manila_gateway_${name}`), `manila_gateway_${name} is exported`);
  const series = seriesNames(exported);
  for (const { panel, expr } of dashboardExprs) {
    t.same(checkExpr(expr, series, exported, true), [], `dashboard "${panel}": ${expr}`);
  }
  for (const r of alertRules) {
    t.same(checkExpr(r.expr, series, exported, false), [], `alert ${r.alert}`);
  }
});

t.test('the PromQL reader finds what it should', async (t) => {
  const series = seriesNames(await fromIssue());
  const exported = await fromIssue();
  t.same(checkExpr('sum by (procedure) (rate(manila_gateway_nfs_ops_total{instance=~"$instance"}[5m]))', series, exported, true), []);
  t.match(checkExpr('rate(manila_gateway_nfs_opz_total[5m])', series, exported, false), [/manila_gateway_nfs_opz_total is not exported/]);
  t.match(checkExpr('manila_gateway_grants{sauce="static"}', series, exported, false), [/has no label sauce/]);
  t.match(checkExpr('sum by (share) (manila_gateway_grants)', series, exported, false), [/grouping label share/]);
  t.match(checkExpr('manila_gateway_grants', series, exported, true), [/does not filter on \$instance/]);
  t.match(checkExpr('sum(rate(manila_gateway_read_bytes_total[5m])', series, exported, false), [/unclosed/]);
  t.same(checkExpr('histogram_quantile(0.9, sum by (le) (rate(manila_gateway_rpc_request_duration_seconds_bucket[5m])))', series, exported, false), []);
  t.match(checkExpr('manila_gateway_rpc_request_duration_seconds_bucket{le="1"} / manila_gateway_connections{le="1"}', series, exported, false), [/connections has no label le/]);
});

t.test('promtool', async (t) => {
  const tool = promtool();
  if (!tool) {
    t.pass('promtool check rules and test rules', { skip: 'promtool is not on PATH (Debian 12: package prometheus ships /usr/bin/promtool)' });
    return;
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'manila-ops-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const check = spawnSync(tool, ['check', 'rules', alertsPath], { encoding: 'utf8' });
  t.equal(check.status, 0, 'promtool check rules', { stdout: check.stdout, stderr: check.stderr });

  // The rules without annotations (their templates are checked above), so the cases below can
  // name labels only.
  const bare = { groups: alerts.groups.map((g) => ({ ...g, rules: g.rules.map(({ annotations: _a, ...r }) => r) })) };
  const rulesFile = path.join(dir, 'rules.yml');
  writeFileSync(rulesFile, stringifyYaml(bare));
  const i = 'instance="n1:9632", job="manila-gateway"';
  const inst = { instance: 'n1:9632', job: 'manila-gateway' };
  const fires = (alertname: string, at: string, labels: Record<string, string>) => ({ alertname, eval_time: at, exp_alerts: [{ exp_labels: labels }] });
  const quiet = (alertname: string, at: string) => ({ alertname, eval_time: at, exp_alerts: [] });
  const unit = {
    rule_files: [rulesFile],
    evaluation_interval: '1m',
    tests: [
      {
        name: 'down, backend, controller, memory, lag, fds, grants: firing',
        interval: '1m',
        input_series: [
          { series: `up{${i}}`, values: '0x30' },
          { series: `manila_gateway_backend_up{${i}, backend="ceph1", type="cephfs"}`, values: '0x30' },
          { series: `manila_gateway_controller_connected{${i}}`, values: '0x30' },
          { series: `manila_gateway_process_resident_memory_bytes{${i}}`, values: '2000000000x30' },
          { series: `manila_gateway_nodejs_eventloop_lag_seconds{${i}}`, values: '0.8x30' },
          { series: `manila_gateway_process_open_fds{${i}}`, values: '900x30' },
          { series: `manila_gateway_process_max_fds{${i}}`, values: '1024x30' },
          { series: `manila_gateway_grants_failed{${i}}`, values: '2x30' },
        ],
        alert_rule_test: [
          quiet('ManilaGatewayDown', '1m'),
          fires('ManilaGatewayDown', '3m', { ...inst, severity: 'critical' }),
          quiet('ManilaGatewayBackendDown', '4m'),
          fires('ManilaGatewayBackendDown', '6m', { ...inst, backend: 'ceph1', type: 'cephfs', severity: 'critical' }),
          quiet('ManilaGatewayControllerDisconnected', '4m'),
          fires('ManilaGatewayControllerDisconnected', '6m', { ...inst, severity: 'warning' }),
          quiet('ManilaGatewayMemoryHigh', '14m'),
          fires('ManilaGatewayMemoryHigh', '16m', { ...inst, severity: 'warning' }),
          fires('ManilaGatewayEventLoopLag', '6m', { ...inst, severity: 'warning' }),
          fires('ManilaGatewayFileDescriptorsNearLimit', '11m', { ...inst, severity: 'warning' }),
          fires('ManilaGatewayGrantsFailed', '11m', { ...inst, severity: 'warning' }),
        ],
      },
      {
        name: 'the same, healthy: quiet',
        interval: '1m',
        input_series: [
          { series: `up{${i}}`, values: '1x30' },
          { series: `manila_gateway_backend_up{${i}, backend="ceph1", type="cephfs"}`, values: '1x30' },
          { series: `manila_gateway_controller_connected{${i}}`, values: '1x30' },
          { series: `manila_gateway_process_resident_memory_bytes{${i}}`, values: '200000000x30' },
          { series: `manila_gateway_nodejs_eventloop_lag_seconds{${i}}`, values: '0.01x30' },
          { series: `manila_gateway_process_open_fds{${i}}`, values: '100x30' },
          { series: `manila_gateway_process_max_fds{${i}}`, values: '1024x30' },
          { series: `manila_gateway_grants_failed{${i}}`, values: '0x30' },
        ],
        alert_rule_test: ['ManilaGatewayDown', 'ManilaGatewayBackendDown', 'ManilaGatewayControllerDisconnected', 'ManilaGatewayMemoryHigh',
          'ManilaGatewayEventLoopLag', 'ManilaGatewayFileDescriptorsNearLimit', 'ManilaGatewayGrantsFailed'].map((a) => quiet(a, '25m')),
      },
      {
        name: 'NFS errors: 1/s NFS3ERR_IO against 10/s NFS3_OK fires',
        interval: '1m',
        input_series: [
          { series: `manila_gateway_nfs_ops_total{${i}, share="s1", procedure="read", status="NFS3_OK"}`, values: '0+600x30' },
          { series: `manila_gateway_nfs_ops_total{${i}, share="s1", procedure="read", status="NFS3ERR_IO"}`, values: '0+60x30' },
        ],
        alert_rule_test: [quiet('ManilaGatewayNfsErrorRatioHigh', '9m'), fires('ManilaGatewayNfsErrorRatioHigh', '16m', { instance: 'n1:9632', severity: 'warning' })],
      },
      {
        name: 'NFS errors: NFS3ERR_NOENT does not count, and a trickle of errors does not page',
        interval: '1m',
        input_series: [
          { series: `manila_gateway_nfs_ops_total{${i}, share="s1", procedure="read", status="NFS3_OK"}`, values: '0+600x30' },
          { series: `manila_gateway_nfs_ops_total{${i}, share="s1", procedure="lookup", status="NFS3ERR_NOENT"}`, values: '0+600x30' },
          { series: `manila_gateway_nfs_ops_total{instance="n2:9632", job="manila-gateway", share="s2", procedure="read", status="NFS3ERR_IO"}`, values: '0+30x30' },
        ],
        alert_rule_test: [quiet('ManilaGatewayNfsErrorRatioHigh', '25m')],
      },
      {
        name: 'latency: p99 between 1 s and 2.5 s fires, fast calls do not',
        interval: '1m',
        input_series: [
          ...['0.1', '1', '2.5', '+Inf'].map((le) => ({
            series: `manila_gateway_rpc_request_duration_seconds_bucket{${i}, program="nfs3", procedure="commit", le="${le}"}`,
            values: le === '0.1' || le === '1' ? '0x30' : '0+10x30',
          })),
          ...['0.1', '1', '2.5', '+Inf'].map((le) => ({
            series: `manila_gateway_rpc_request_duration_seconds_bucket{${i}, program="nfs3", procedure="getattr", le="${le}"}`,
            values: '0+100x30',
          })),
        ],
        alert_rule_test: [
          quiet('ManilaGatewayLatencyHigh', '8m'),
          fires('ManilaGatewayLatencyHigh', '16m', { instance: 'n1:9632', program: 'nfs3', procedure: 'commit', severity: 'warning' }),
        ],
      },
      {
        name: 'every dashboard query parses',
        interval: '1m',
        input_series: [{ series: `up{${i}}`, values: '1x5' }],
        promql_expr_test: dashboardExprs.map(({ expr }) => ({ expr: grafanaToPromql(expr), eval_time: '0m', exp_samples: [] }))
          .filter(({ expr }) => !/^up\{/.test(expr)),
      },
    ],
  };
  const unitFile = path.join(dir, 'alerts.test.yml');
  writeFileSync(unitFile, stringifyYaml(unit));
  const run = spawnSync(tool, ['test', 'rules', unitFile], { encoding: 'utf8' });
  t.equal(run.status, 0, 'promtool test rules: each alert fires on its data, stays quiet otherwise; every dashboard query parses', { stdout: run.stdout, stderr: run.stderr });
});
