#!/usr/bin/env node
// The command's entry point. Every filesystem operation of a guest runs on libuv's threadpool
// (the native bridge's workers), and its default of 4 threads lets four slow operations (FILE_SYNC
// writes, COMMITs of large files) stall every other guest. The pool's size is read once, at its
// first use, and the ES module loader uses it at once: so this entry is CommonJS, and sizes the
// pool before it loads the daemon. An operator's UV_THREADPOOL_SIZE wins.
'use strict';
const DEFAULT_THREADPOOL_SIZE = 64;

if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(DEFAULT_THREADPOOL_SIZE);
import('../dist/cli.js').catch((error) => {
  process.stderr.write(`manila-gateway: ${error && error.message ? error.message : error}\nrun "npm install" to build it\n`);
  process.exit(1);
});
