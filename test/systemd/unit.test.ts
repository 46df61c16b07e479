// The unit file and the example config in systemd/ are what operators install: both must be valid.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { cliPath, repoRoot } from '../helpers/daemon.js';

const unitText = readFileSync(path.join(repoRoot, 'systemd', 'manila-gateway.service'), 'utf8');

t.test('systemd-analyze verify is clean', async (t) => {
  const which = spawnSync('which', ['systemd-analyze']);
  if (which.status !== 0) {
    t.fail('systemd-analyze is missing: scripts/install-deps.sh --test installs the systemd package');
    return;
  }
  // verify checks that ExecStart= exists: point it at this checkout's command.
  const dir = t.testdir();
  const unit = path.join(dir, 'manila-gateway.service');
  writeFileSync(unit, unitText.replaceAll('/usr/local/bin/manila-gateway', cliPath));
  const result = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
  t.equal(result.status, 0, result.stderr);
  t.equal(result.stderr.trim(), '', 'no warnings');
  t.comment(execFileSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).split('\n')[0]!);
});

t.test('the unit is Type=notify with a watchdog, reload and the hardening the README promises', async (t) => {
  for (const line of [
    'Type=notify',
    'WatchdogSec=30s',
    'ExecReload=/bin/kill -HUP $MAINPID',
    'NoNewPrivileges=yes',
    'ProtectSystem=full',
    'PrivateTmp=yes',
    'LimitNOFILE=1048576',
  ]) {
    t.ok(unitText.split('\n').includes(line), line);
  }
  const caps = /^CapabilityBoundingSet=(.*)$/m.exec(unitText)?.[1]?.split(' ') ?? [];
  t.same(caps.sort(), ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_NET_BIND_SERVICE', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SYS_ADMIN']);
});

t.test('the example config is valid (with its files present)', async (t) => {
  const dir = t.testdir({ token: 'tok\n', 'ca.pem': 'pem\n' });
  const raw = YAML.parse(readFileSync(path.join(repoRoot, 'systemd', 'config.example.yaml'), 'utf8'));
  raw.controller.token_file = path.join(dir, 'token');
  raw.controller.ca_file = path.join(dir, 'ca.pem');
  const config = parseConfig(raw, 'config.example.yaml');
  t.equal(config.listen.vsock.length, 1);
  t.same(config.metrics, { host: '127.0.0.1', port: 9632 });
});
