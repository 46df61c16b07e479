// Loads the native addon (native-bridges/, built by `npm install`) once, from dist/ or src/, with
// an error that says what to do when it is missing or older than this code.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const candidates = [
  path.join(here, '../../native-bridges/build/Release/manila_native.node'),
  path.join(here, '../../../native-bridges/build/Release/manila_native.node'),
];
let addon: Record<string, unknown> | undefined;

/** The addon's exports; `required` names exports this caller needs (an older build lacks them). */
export function loadAddon(required: readonly string[]): Record<string, unknown> {
  if (!addon) {
    const require = createRequire(import.meta.url);
    let lastError: unknown;
    for (const candidate of candidates) {
      try {
        addon = require(candidate) as Record<string, unknown>;
        break;
      } catch (error) {
        lastError = error;
      }
    }
    if (!addon) {
      throw new Error(`the native addon is not built (${String(lastError)}); run "npm install" (needs g++, make and python3 for node-gyp)`);
    }
  }
  const missing = required.filter((name) => typeof addon![name] !== 'function');
  if (missing.length > 0) {
    throw new Error(`the native addon is out of date (no ${missing.join(', ')}); run "npm install" to rebuild it`);
  }
  return addon;
}
