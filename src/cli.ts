// manila-gateway: serve | check-config | demo | controller (DESIGN.md "Interfaces others rely on").
import { mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, parseConfig, type GatewayConfig } from './config/load.js';
import { startGateway, type Gateway } from './server.js';

const here = path.dirname(fileURLToPath(import.meta.url));

function version(): string {
  const pkg = JSON.parse(readFileSync(path.join(here, '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

const USAGE = `usage:
  manila-gateway serve --config FILE         run the gateway
  manila-gateway check-config --config FILE  validate a config file; exit 1 naming each bad field
  manila-gateway demo [--dir DIR] [--port P] export DIR/exports/demo as share "demo" to 127.0.0.1
                                             (what "npm start" runs; port 2049, or a free one if taken)
  manila-gateway controller --listen HOST:PORT --state FILE [--token-file FILE]
                                             the reference controller (not in this build yet)
  manila-gateway --version`;

function fail(message: string, code = 2): never {
  process.stderr.write(`manila-gateway: ${message}\n`);
  process.exit(code);
}

function configArg(args: string[]): string {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true });
  if (!values.config) fail(`--config FILE is required\n${USAGE}`);
  return values.config;
}

function readConfig(file: string): GatewayConfig {
  try {
    return loadConfig(file);
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message, 1);
    throw error;
  }
}

/** Stop cleanly on SIGTERM/SIGINT: stop accepting, close connections, exit 0. */
function stopOnSignals(gateway: Gateway): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    gateway.logger.info({ signal }, 'stopping');
    gateway
      .stop()
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        gateway.logger.error({ err: error }, 'stop failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function serve(args: string[]): Promise<void> {
  const config = readConfig(configArg(args));
  const gateway = await startGateway(config);
  stopOnSignals(gateway);
}

function checkConfig(args: string[]): void {
  const file = configArg(args);
  const config = readConfig(file);
  process.stdout.write(
    `${file}: ok (node ${config.nodeId}, ${config.listen.tcp.length} tcp listener(s), ` +
      `${config.backends.length} backend(s), ${config.grants.length} static grant(s))\n`,
  );
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, host, () => probe.close(() => resolve(true)));
  });
}

async function demo(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { dir: { type: 'string' }, port: { type: 'string' } },
    strict: true,
  });
  const dir = path.resolve(values.dir ?? path.join(here, '..', 'demo-data'));
  const share = path.join(dir, 'exports', 'demo');
  mkdirSync(share, { recursive: true });
  const host = '127.0.0.1';
  let port = values.port !== undefined ? Number(values.port) : 2049;
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port ${values.port}: not a port number`);
  if (values.port === undefined && !(await portFree(host, port))) port = 0;
  const config = parseConfig(
    {
      node_id: 'demo',
      state_dir: path.join(dir, 'state'),
      listen: { tcp: [{ host, port }] },
      backends: [{ id: 'local', type: 'local', path: path.join(dir, 'exports') }],
      grants: [
        { id: 'demo', share: 'demo', backend: 'local', path: 'demo', guest: { tcp: host }, access: 'rw', squash: 'none' },
      ],
    },
    'demo',
  );
  const gateway = await startGateway(config);
  stopOnSignals(gateway);
  const bound = gateway.ports()[0]!;
  const opts = `vers=3,proto=tcp,port=${bound},mountport=${bound},mountproto=tcp,nolock`;
  process.stderr.write(
    `\nmanila-gateway demo: ${share} is exported as share "demo" to ${host} on port ${bound}\n` +
      `  kernel client:  sudo mkdir -p /mnt/demo && sudo mount -t nfs -o ${opts} ${host}:/demo /mnt/demo\n` +
      `  libnfs:         nfs-ls "nfs://${host}/demo?version=3&nfsport=${bound}&mountport=${bound}"\n` +
      `  stop with Ctrl-C\n\n`,
  );
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'check-config':
      return checkConfig(rest);
    case 'demo':
      return demo(rest);
    case 'controller':
      return fail('the reference controller is not available in this build yet', 1);
    case '--version':
    case '-v':
      process.stdout.write(`${version()}\n`);
      return;
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      fail(command ? `unknown command ${command}\n${USAGE}` : USAGE);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`manila-gateway: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
