#!/usr/bin/env node
// `npm install`'s build of the native addon (native-bridges/, node-gyp). node-gyp reports a missing
// toolchain as a stack trace ("not found: make" deep inside it), so this checks for what it needs
// first and says plainly what is missing and how to get it; then it runs `node-gyp rebuild`.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/** Whether `command` (a name looked up on PATH, or a path) is an executable. */
function found(command) {
  const candidates = command.includes('/')
    ? [command]
    : (process.env.PATH ?? '').split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, command));
  return candidates.some((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

const missing = [];
// node-gyp's Makefiles compile and link with $CXX, by default g++.
const cxx = (process.env.CXX ?? '').trim().split(/\s+/)[0] || 'g++';
if (!found(cxx)) missing.push(`${cxx} (a C++17 compiler)`);
if (!found('make')) missing.push('make');
// node-gyp takes --python, $npm_config_python or $PYTHON, else python3 or python on PATH.
const python = process.env.npm_config_python || process.env.PYTHON;
if (python ? !found(python) : !found('python3') && !found('python')) missing.push(python ?? 'python3');

if (missing.length > 0) {
  console.error(
    [
      '',
      `manila-gateway: cannot build the native addon (native-bridges/): ${missing.join(', ')} not found.`,
      'Building it (node-gyp, during npm install) needs g++, make and python3. On Debian or Ubuntu, as root:',
      '  bash scripts/install-deps.sh        (or: apt-get install -y g++ make python3)',
      'then run "npm install" again.',
      '',
    ].join('\n'),
  );
  process.exit(1);
}

const gyp = spawnSync('node-gyp', ['rebuild', '--directory', 'native-bridges'], { stdio: 'inherit' });
if (gyp.error) {
  console.error(`manila-gateway: cannot run node-gyp (${gyp.error.message}); it comes with npm and as a devDependency.`);
  process.exit(1);
}
if (gyp.status !== 0) {
  console.error('\nmanila-gateway: building the native addon (native-bridges/) failed: see the node-gyp output above.');
  process.exit(gyp.status ?? 1);
}
