// Durable replacement of a small state file: write a temporary file beside it, fsync it, rename
// it over the old one, then fsync the directory so the rename itself survives a power cut. A
// reader sees the old contents or the new, never a mix.
import { open, rename, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

export async function writeFileDurably(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  const temp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', mode);
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  // The new contents are in place from here on: a failure now cannot undo the rename, so it is
  // reported as its own kind of error (the caller must not treat the write as not having happened).
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const directory = await open(dir, 'r');
      try {
        await directory.sync();
      } finally {
        await directory.close();
      }
      return;
    } catch (error) {
      lastError = error;
    }
  }
  throw new DirectorySyncError(file, lastError);
}

/** The file was replaced, but fsync of its directory failed: the rename may not survive a crash. */
export class DirectorySyncError extends Error {
  constructor(
    readonly file: string,
    cause: unknown,
  ) {
    super(`${file} was replaced but its directory could not be synced: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}
