// The V8 flags the daemon runs with, in one place. The first line of manila-gateway.cjs and
// `npm start` spell them out (a shebang cannot read a file); test/cli.test.ts holds them to this
// list, and the benchmarks and tests start the daemon with it. Why each one: manila-gateway.cjs.
'use strict';
module.exports = ['--initial-heap-size=128', '--max-semi-space-size=64', '--no-parallel-scavenge'];
