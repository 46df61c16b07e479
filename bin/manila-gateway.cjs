#!/usr/bin/env node
// The command's entry point. Guests' filesystem operations run on the native addon's own worker
// threads (native-bridges/src/pool.cc: up to MANILA_POOL_THREADS, default 64, started on demand),
// not on libuv's threadpool, which is left to Node's own file and DNS work at its default size.
'use strict';
import('../dist/cli.js').catch((error) => {
  process.stderr.write(`manila-gateway: ${error && error.message ? error.message : error}\nrun "npm install" to build it\n`);
  process.exit(1);
});
