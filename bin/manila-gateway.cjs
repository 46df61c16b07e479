#!/usr/bin/env -S node --initial-heap-size=128 --max-semi-space-size=64 --no-parallel-scavenge
// The command's entry point. Guests' filesystem operations run on the native addon's own worker
// threads (native-bridges/src/pool.cc: up to MANILA_POOL_THREADS, default 256, started on demand,
// an idle one exiting after MANILA_POOL_IDLE_MS, default 30 s, down to 4),
// not on libuv's threadpool, which is left to Node's own file and DNS work at its default size.
//
// --initial-heap-size=128 (on the line above, and wherever the daemon is started with `node`):
// every socket read is a new 64 KiB buffer, and from V8's small default heap, sequential writes
// at 500 MiB/s set off a full mark-compact several times a second: a quarter of the daemon's CPU
// in the seqwrite profile. A 128 MiB starting heap cut the CPU per 1 MiB WRITE by about 25% with
// the same peak RSS (BENCHMARKS.md).
// --max-semi-space-size=64: the young generation's size, 16 MiB by default. At 40k requests a
// second the default filled every ~45 ms, and each scavenge stopped the event loop for 1-5 ms with
// 32 requests in flight: that, not the work, set our p99 latency. With 64 MiB, a quarter as many
// stops; GETATTR p99 at queue depth 32 went from 3.7-4.2 ms to 2.1-2.3 ms (run.sh, BENCHMARKS.md).
// --no-parallel-scavenge: under load a scavenge finds 8-90 KB still alive (the requests in
// flight), and handing that out to V8's helper threads cost more than copying it: the parallel
// phase alone took a median 0.29 ms, on two cores the pool threads and the client also want. Done
// on the main thread the whole pause went from a median 0.7 to 0.5 ms (--trace-gc-nvp), and randread
// p99 at queue depth 32 from 1968 to 1776 us over six alternating pairs (BENCHMARKS.md).
// V8 takes these flags only at start, so they cannot be set here. bin/node-flags.cjs lists them
// for whatever starts the daemon with `node` (npm start, the tests, the benchmarks).
'use strict';
import('../dist/cli.js').catch((error) => {
  process.stderr.write(`manila-gateway: ${error && error.message ? error.message : error}\nrun "npm install" to build it\n`);
  process.exit(1);
});
