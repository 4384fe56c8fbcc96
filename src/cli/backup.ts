/**
 * `plinth backup FILE`: a consistent snapshot of the running daemon's database (GET /api/v1/backup, admin
 * token), written to FILE.partial (owner only: it holds every secret), checked to be an SQLite database, then
 * renamed, so FILE is either a whole backup or absent. Restoring is `plinth restore FILE` on the daemon's host,
 * with the daemon stopped (src/backup.ts).
 */
import { createWriteStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { problemOf } from './client.js';
import type { CliContext } from './context.js';
import { ApiError } from './errors.js';
import { humanBytes } from './output.js';

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

export async function backupCommand(ctx: CliContext, file: string): Promise<void> {
  const { client } = ctx;
  let r: Response;
  try {
    r = await client.fetch(client.url('/backup'), { headers: client.authHeaders(), signal: ctx.signal });
  } catch (err) {
    throw await client.explain(err);
  }
  if (!r.ok || !r.body) {
    const text = await r.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const { detail } = problemOf(r.status, body, text);
    const hint = r.status === 401 || r.status === 403 ? ' (a backup needs the admin token)' : '';
    throw new ApiError(`backup refused: ${detail}${hint}`, r.status);
  }
  const partial = `${file}.partial`;
  try {
    await pipeline(
      Readable.fromWeb(r.body as unknown as WebReadableStream),
      createWriteStream(partial, { mode: 0o600 }),
    );
    const fh = await open(partial, 'r');
    const head = Buffer.alloc(SQLITE_MAGIC.length);
    const { size } = await fh.stat();
    await fh.read(head, 0, head.length, 0);
    await fh.close();
    if (!head.equals(SQLITE_MAGIC)) throw new ApiError('backup: the daemon sent something that is not a database');
    await rename(partial, file);
    ctx.io.err(`backup: ${humanBytes(size)} written to ${file} (restore with: plinth restore ${file})\n`);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
}
