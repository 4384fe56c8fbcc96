/**
 * Builds the indexes an upgrade added (pg-migrations.ts, PgIndex) after the migrations commit: in the background,
 * `CREATE INDEX CONCURRENTLY`, on a connection of its own, so lease writes (every daemon's ACKs) go on while it
 * reads the table and a daemon's start does not wait for it. A concurrent build waits for transactions older than
 * it (a running pg_dump, an operator's open psql transaction) before it ends; that is why it is not awaited at start.
 *
 * One daemon builds at a time: the builder holds a session advisory lock keyed by the schema and checks again
 * under it what is missing; a daemon that finds the lock taken leaves the build to its holder. A build that fails
 * or is cancelled (the daemon stopped) leaves an invalid index, which the next daemon to start drops and builds.
 */
import pg from 'pg';
import { missingPgIndexes } from './pg-migrations.js';

/** What the build reports, for the daemon's log (store/open.ts). */
export type IndexBuildNote =
  | { index: string; phase: 'building' }
  | { index: string; phase: 'built'; ms: number }
  | { index: string; phase: 'failed'; error: string }
  | { phase: 'left to another daemon' };

export type IndexBuild = {
  /** Settles when the build ended, was skipped, failed or was stopped; never rejects. */
  done: Promise<void>;
  /** Cancels a build in progress (its index is left invalid, for the next start) and waits for it to end. */
  stop(): Promise<void>;
};

const LOCK = "hashtext('plinth-index-build:' || current_schema())";

export function buildPgIndexes(config: pg.ClientConfig, note: (n: IndexBuildNote) => void = () => {}): IndexBuild {
  const client = new pg.Client(config);
  client.on('error', () => {});
  let pid: number | undefined;
  let stopped = false;
  let building: string | undefined;
  const run = async () => {
    await client.connect();
    pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const got = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${LOCK}) AS ok`);
    if (!got.rows[0]!.ok) return note({ phase: 'left to another daemon' });
    // Under the lock: what another daemon's build finished meanwhile is not built again.
    for (const x of await missingPgIndexes(client)) {
      if (stopped) return;
      building = x.name;
      note({ index: x.name, phase: 'building' });
      const t0 = Date.now();
      // An invalid one (a build that did not end) is dropped first: IF NOT EXISTS would keep it, invalid.
      await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${x.name}`);
      if (stopped) return;
      await client.query(`CREATE INDEX CONCURRENTLY ${x.name} ${x.def}`);
      note({ index: x.name, phase: 'built', ms: Date.now() - t0 });
      building = undefined;
    }
  };
  const done = run()
    .catch((err: Error) => {
      note({ index: building ?? '(checking)', phase: 'failed', error: stopped ? 'stopped' : err.message });
    })
    .finally(() => client.end().catch(() => {}));
  return {
    done,
    async stop() {
      stopped = true;
      if (building && pid !== undefined) {
        // From a connection of its own: the build's is busy with the statement.
        const c = new pg.Client(config);
        c.on('error', () => {});
        await c
          .connect()
          .then(() => c.query('SELECT pg_cancel_backend($1)', [pid]))
          .catch(() => {})
          .finally(() => c.end().catch(() => {}));
      }
      await done;
    },
  };
}
