// /proc/self/mountinfo (proc(5)): what is mounted where, read without touching the mounts
// themselves, so a hung backend cannot stall it.
import { readFile } from 'node:fs/promises';

export interface MountEntry {
  mountId: number;
  /** st_dev of the mount as "major:minor"; for FUSE the minor names its fusectl connection. */
  major: number;
  minor: number;
  mountPoint: string;
  fstype: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    if (fields.length < 10 || separator < 0) continue;
    const [major, minor] = fields[2]!.split(':').map(Number);
    entries.push({
      mountId: Number(fields[0]),
      major: major!,
      minor: minor!,
      mountPoint: unescape(fields[4]!),
      fstype: fields[separator + 1]!,
      source: unescape(fields[separator + 2] ?? ''),
    });
  }
  return entries;
}

/** The mount on top at `mountPoint` (the last one listed there), if any. */
export async function mountAt(mountPoint: string, file = '/proc/self/mountinfo'): Promise<MountEntry | undefined> {
  const entries = parseMountinfo(await readFile(file, 'utf8'));
  let found: MountEntry | undefined;
  for (const entry of entries) if (entry.mountPoint === mountPoint) found = entry;
  return found;
}
