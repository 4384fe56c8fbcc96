/**
 * The two store backends for the contract suite (`describe.each(backends(...))`). SQLite always; PostgreSQL when
 * PLINTH_TEST_PG_URL names a server (scripts/pg-throwaway.sh starts one), else its half is skipped with a line
 * saying so. Every PostgreSQL store a test file opens lives in a schema of its own, named after the file, created
 * here and dropped when the file is done, so files running in parallel on one server never see each other.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeEach } from 'vitest';
import { openPgStore, type PgOptions } from '../../src/store/pg.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

export const PG_URL = process.env.PLINTH_TEST_PG_URL || undefined;

/** One database of a backend: `open()` gives a store on it; a second `open()` is a second daemon on the same one. */
export type TestDb = { open(opts?: PgOptions): Promise<Store>; where: string };
export type Backend = { name: 'sqlite' | 'postgres'; available: boolean; db(): Promise<TestDb> };

let reported = false;
/** Logs once per file that the PostgreSQL half is skipped, so a green run cannot hide it. */
export function reportPgSkip(file: string): void {
  if (PG_URL || reported) return;
  reported = true;
  console.warn(
    `[${path.basename(file)}] PostgreSQL half SKIPPED: set PLINTH_TEST_PG_URL (scripts/pg-throwaway.sh start DIR)`,
  );
}

/** Runs SQL as the test's administrator (creating and dropping schemas). */
export async function adminQuery(sql: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    return await c.query(sql, values);
  } finally {
    await c.end();
  }
}

/** The backends of a test file; `file` is import.meta.filename (names its schemas). */
export function backends(file: string): Backend[] {
  const slug = path
    .basename(file)
    .replace(/\.test\.ts$/, '')
    .replace(/[^a-z0-9]/gi, '_')
    .toLowerCase();
  const dirs: string[] = [];
  const schemas: string[] = [];
  const stores: Store[] = [];
  afterAll(async () => {
    for (const s of stores.splice(0)) await s.close().catch(() => {});
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    for (const s of schemas.splice(0)) await adminQuery(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
  });
  reportPgSkip(file);
  let n = 0;
  const sqlite: Backend = {
    name: 'sqlite',
    available: true,
    async db() {
      const dir = mkdtempSync(path.join(tmpdir(), `plinth-${slug}-`));
      dirs.push(dir);
      const where = path.join(dir, 'plinth.db');
      return {
        where,
        open: async () => {
          const s = openSqliteStore(where);
          stores.push(s);
          return s;
        },
      };
    },
  };
  const postgres: Backend = {
    name: 'postgres',
    available: Boolean(PG_URL),
    async db() {
      const schema = `t_${slug}_${process.pid}_${++n}`;
      await adminQuery(`CREATE SCHEMA ${schema}`);
      schemas.push(schema);
      return {
        where: schema,
        open: async (opts) => {
          const s = await openPgStore(PG_URL!, { schema, ...opts });
          stores.push(s);
          return s;
        },
      };
    },
  };
  return [sqlite, postgres];
}

/** Call first in a `describe.each(backends(...))` body: the tests of a backend that is not there are skipped. */
export function skipUnavailable(b: Backend): void {
  beforeEach((ctx) => {
    if (!b.available) ctx.skip();
  });
}

/** For `describe.skipIf`: true when there is no PostgreSQL to test against. */
export const noPg = !PG_URL;

/**
 * A TCP relay on `port` (0: any) to the test server, for outage tests: cut() closes every connection and stops
 * listening; a new relay on the same port restores the path. pause() is a partition without a reset: every byte
 * either way is dropped from then on and neither side hears of the other closing.
 */
export async function relay(port = 0) {
  const target = new URL(PG_URL!);
  const sockets = new Set<net.Socket>();
  let paused = false;
  const server = net.createServer((client) => {
    const up = net.connect(Number(target.port || 5432), target.hostname);
    for (const [from, to] of [
      [client, up],
      [up, client],
    ] as const) {
      sockets.add(from);
      from.on('error', () => {});
      from.on('data', (d) => paused || to.write(d));
      from.on('close', () => {
        sockets.delete(from);
        if (!paused) to.destroy();
      });
    }
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    pause() {
      paused = true;
    },
    async cut() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** The backend pid holding the leader lock of `schema` (src/store/pg-leader.ts), if any. */
export async function leaderPid(schema: string): Promise<number | undefined> {
  const r = await adminQuery(
    `SELECT pid FROM pg_locks, (SELECT hashtextextended('plinth-leader:' || $1, 0) AS k) x
      WHERE locktype = 'advisory' AND granted AND classid::bigint = (k >> 32) & 4294967295
        AND objid::bigint = k & 4294967295 AND objsubid = 1`,
    [schema],
  );
  return r.rows[0]?.pid;
}
