// The package version, read once from package.json (dist/ sits beside it).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export const SOFTWARE_VERSION: string = (
  JSON.parse(readFileSync(path.join(here, '..', 'package.json'), 'utf8')) as { version: string }
).version;
