/**
 * GET /api/v1/backup (admin only: the database holds every token hash and secure param in clear): a consistent
 * snapshot of the live database, taken with SQLite's online backup into a private temp file (src/backup.ts),
 * streamed, then deleted. Safe while the daemon serves; `plinth backup FILE` saves it.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { DB_FILE, snapshotDatabase } from '../backup.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { sendProblem } from './problem.js';

export function registerBackupRoutes(api: FastifyInstance, deps: { store: Store; dataDir: string; log: Logger }) {
  api.get('/backup', { config: { adminOnly: true } }, async (req, reply) => {
    // On PostgreSQL the inventory is not the data dir's plinth.db (absent, or stale from before the move): a
    // snapshot of it would be a silent lie. The database's own tools take a consistent one.
    if ((deps.store as { backend?: string }).backend === 'postgres') {
      return sendProblem(reply, 409, 'the inventory is on PostgreSQL: back it up with pg_dump, not this route');
    }
    // mkdtemp makes the directory 0700: the snapshot is never readable by others, even for a moment.
    const dir = await mkdtemp(path.join(tmpdir(), 'plinth-backup-'));
    const file = path.join(dir, DB_FILE);
    const cleanup = () => void rm(dir, { recursive: true, force: true }).catch(() => {});
    try {
      const t0 = Date.now();
      const { pages } = await snapshotDatabase(path.join(deps.dataDir, DB_FILE), file);
      const { size } = await stat(file);
      deps.log.info({ pages, bytes: size, ms: Date.now() - t0, ip: req.ip }, 'backup: snapshot taken');
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      const stream = createReadStream(file);
      stream.once('close', cleanup);
      return reply
        .header('content-type', 'application/vnd.sqlite3')
        .header('content-length', size)
        .header('content-disposition', `attachment; filename="plinth-${stamp}.db"`)
        .header('cache-control', 'no-store')
        .send(stream);
    } catch (err) {
      cleanup();
      deps.log.error({ err }, 'backup: snapshot failed');
      return sendProblem(reply, 500, `the backup could not be taken: ${(err as Error).message}`);
    }
  });
}
