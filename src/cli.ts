// manila-gateway: serve | check-config | demo | controller (DESIGN.md "Interfaces others rely on").
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, parseConfig, type GatewayConfig } from './config/load.js';
import type { Logger } from 'pino';
import { startGateway } from './server.js';
import { startController, type ControllerOptions } from './controller/server.js';
import { parseControllerArgs, UsageError } from './controller/args.js';
import { SOFTWARE_VERSION } from './version.js';
import { notify, reloadingState, watchdogIntervalMs } from './systemd/notify.js';

const here = path.dirname(fileURLToPath(import.meta.url));

const USAGE = `usage:
  manila-gateway serve --config FILE         run the gateway
  manila-gateway check-config --config FILE  validate a config file; exit 1 naming each bad field
  manila-gateway demo [--dir DIR] [--port P] [--controller-port P]
                                             the reference controller and a gateway in one process:
                                             DIR/exports/demo is granted as share "demo" to 127.0.0.1
                                             (what "npm start" runs; ports 2049 and 8080, or free
                                             ones if taken)
  manila-gateway controller --listen HOST:PORT --state FILE [--token-file FILE]
                 [--tls-cert FILE --tls-key FILE [--client-ca FILE]] [--heartbeat-ms N]
                                             the reference controller: HTTP API and /v1/gateway
                                             websocket on one port (https/wss with --tls-*;
                                             --client-ca requires client certificates whose
                                             CN is the node id; heartbeat 250-60000 ms, default 2000)
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

/**
 * Stop cleanly on SIGTERM/SIGINT: `onSignal` first (once), then `stops` in order (each stops
 * accepting and closes its connections), then exit 0; exit 1 if one fails.
 */
function stopOnSignals(logger: Logger, stops: Array<() => Promise<void>>, onSignal: () => void = () => undefined): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    onSignal();
    logger.info({ signal }, 'stopping');
    stops
      .reduce((done, next) => done.then(next), Promise.resolve())
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        logger.error({ err: error }, 'stop failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/**
 * The daemon under a service manager: READY=1 once listeners are bound and grants loaded,
 * watchdog pings while the event loop turns, RELOADING=1 around a SIGHUP reload, STOPPING=1 and
 * a bounded drain on SIGTERM/SIGINT. Outside systemd the notifications are no-ops.
 */
async function serve(args: string[]): Promise<void> {
  const file = configArg(args);
  const config = readConfig(file);
  const gateway = await startGateway(config);
  const logger = gateway.logger;
  let drainMs = config.limits.drainTimeoutMs;
  notify(`READY=1\nSTATUS=serving ${gateway.grants.size} grant(s)\nMAINPID=${process.pid}`);
  const watchdogMs = watchdogIntervalMs();
  // The ping runs on the event loop: a loop stuck for the whole WatchdogSec gets the daemon restarted.
  const watchdog = watchdogMs ? setInterval(() => notify('WATCHDOG=1'), watchdogMs) : undefined;

  let stopping = false;
  let reloading = Promise.resolve();
  process.on('SIGHUP', () => {
    reloading = reloading.then(async () => {
      if (stopping) return;
      notify(reloadingState());
      try {
        const next = loadConfig(file);
        const result = await gateway.reload(next);
        drainMs = next.limits.drainTimeoutMs;
        if (stopping) return; // READY=1 must not follow STOPPING=1
        notify(`READY=1\nSTATUS=serving ${gateway.grants.size} grant(s); reloaded${result.failed.length ? ` (${result.failed.length} listener(s) failed)` : ''}`);
      } catch (error) {
        // A bad file changes nothing: the daemon goes on with what it had.
        const problems = error instanceof ConfigError ? error.problems : [(error as Error).message];
        logger.error({ file, problems }, 'reload refused: the running config stays');
        notify('READY=1\nSTATUS=reload refused; see the log');
      }
    });
  });

  // Calls already received are answered within limits.drain_timeout_s (as last loaded).
  stopOnSignals(logger, [() => gateway.shutdown(drainMs)], () => {
    stopping = true;
    notify('STOPPING=1');
    clearInterval(watchdog);
  });
}

function checkConfig(args: string[]): void {
  const file = configArg(args);
  const config = readConfig(file);
  process.stdout.write(
    `${file}: ok (node ${config.nodeId}, ${config.listen.tcp.length} tcp, ${config.listen.vsock.length} vsock and ` +
      `${config.listen.hybridVsock.length} hybrid vsock listener(s), ` +
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

/** A free port: `preferred` when it is free, else one the kernel picks. */
async function portOr(host: string, preferred: number): Promise<number> {
  return (await portFree(host, preferred)) ? preferred : 0;
}

function portArg(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`${name} ${value}: not a port number`);
  return port;
}

/**
 * The embedded default: the reference controller and a gateway in one process. The demo grant
 * lives at the controller, as every grant does in production, and reaches the gateway over the
 * loopback websocket; more can be added through the controller's HTTP API.
 */
async function demo(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { dir: { type: 'string' }, port: { type: 'string' }, 'controller-port': { type: 'string' } },
    strict: true,
  });
  const dir = path.resolve(values.dir ?? path.join(here, '..', 'demo-data'));
  const share = path.join(dir, 'exports', 'demo');
  mkdirSync(share, { recursive: true });
  const host = '127.0.0.1';
  const port = portArg(values.port, '--port') ?? (await portOr(host, 2049));
  const controllerPort = portArg(values['controller-port'], '--controller-port') ?? (await portOr(host, 8080));

  const controller = await startController({ host, port: controllerPort, stateFile: path.join(dir, 'controller-state.json') });
  const demoGrant = { id: 'demo', node_id: 'demo', share: 'demo', backend: 'local', path: 'demo', guest: { tcp: host }, access: 'rw', squash: 'none' };
  const posted = await fetch(`${controller.url}/v1/grants`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(demoGrant),
  });
  if (posted.status !== 200 && posted.status !== 201) fail(`the controller refused the demo grant: ${posted.status} ${await posted.text()}`, 1);

  const config = parseConfig(
    {
      node_id: 'demo',
      state_dir: path.join(dir, 'state'),
      listen: { tcp: [{ host, port }] },
      backends: [{ id: 'local', type: 'local', path: path.join(dir, 'exports') }],
      controller: { url: controller.gatewayUrl },
    },
    'demo',
  );
  const gateway = await startGateway(config);
  stopOnSignals(gateway.logger, [() => gateway.stop(), () => controller.stop()]);
  await until(() => gateway.grants.get('demo') !== undefined, 10_000);
  const bound = gateway.ports()[0]!;
  const opts = `vers=3,proto=tcp,port=${bound},mountport=${bound},mountproto=tcp,nolock`;
  process.stderr.write(
    `\nmanila-gateway demo: ${share} is exported as share "demo" to ${host} on port ${bound}\n` +
      `  kernel client:  sudo mkdir -p /mnt/demo && sudo mount -t nfs -o ${opts} ${host}:/demo /mnt/demo\n` +
      `  libnfs:         nfs-ls "nfs://${host}/demo?version=3&nfsport=${bound}&mountport=${bound}"\n` +
      `  controller API: curl ${controller.url}/v1/grants   (the grant came from it; see README "Controller")\n` +
      `  stop with Ctrl-C\n\n`,
  );
}

/** Resolves once `check()` holds, or after `timeoutMs` (the caller carries on either way). */
async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** The reference controller; stops cleanly on SIGTERM/SIGINT. */
async function controller(args: string[]): Promise<void> {
  let options: ControllerOptions;
  try {
    options = parseControllerArgs(args);
  } catch (error) {
    if (error instanceof UsageError) fail(`${error.message}\n${USAGE}`);
    throw error;
  }
  const running = await startController(options);
  running.logger.info({ url: running.url, gatewayUrl: running.gatewayUrl }, 'controller listening');
  stopOnSignals(running.logger, [() => running.stop()]);
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
      return controller(rest);
    case '--version':
    case '-v':
      process.stdout.write(`${SOFTWARE_VERSION}\n`);
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
