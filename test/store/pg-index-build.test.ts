/**
 * An upgrade's indexes on PostgreSQL (pg-migrations.ts PgIndex, pg-index-build.ts): built after the migrations'
 * COMMIT with CREATE INDEX CONCURRENTLY in the background, so neither the daemon's start nor any lease write waits
 * for the build; by one daemon when several start; dropped and built again when a build did not end. PostgreSQL
 * only; skipped with a line saying so without PLINTH_TEST_PG_URL.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import type { PgStore } from '../../src/store/pg.js';
import type { IndexBuildNote } from '../../src/store/pg-index-build.js';
import { adminQuery, backends, PG_URL, skipUnavailable, type TestDb } from './backends.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([
    p,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)),
  ]);

const until = async (test: () => Promise<boolean>, ms = 10_000) => {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50)))
    if (await test()) return true;
  return false;
};

/** A schema as Plinth left it at v5 (before the sweep's index), with 2,000 live leases in it. */
async function atV5(db: TestDb): Promise<void> {
  await (await db.open()).close();
  await adminQuery(`SET search_path = ${db.where};
    DROP INDEX leases_live_expiry;
    DELETE FROM plinth_migrations WHERE version = 6;
    INSERT INTO leases (key, doc, body, etag)
    SELECT k, b::jsonb, b, md5(b) FROM (
      SELECT '10.1.' || (i / 256) || '.' || (i % 256) AS k, json_build_object('address', '10.1.' || (i / 256) || '.' || (i % 256),
        'mac', '52:54:00:' || lpad(to_hex(i), 6, '0'), 'subnet', 'lab', 'state', 'bound',
        'expiresAt', '2999-01-01T00:00:00.000Z')::text AS b
      FROM generate_series(1, 2000) i) x;`);
}

/** The index's oid and whether it is valid; undefined when the schema has none of that name. */
async function indexState(db: TestDb, name: string): Promise<{ oid: number; valid: boolean } | undefined> {
  const r = await adminQuery(
    `SELECT i.indexrelid::int AS oid, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE c.relnamespace = $1::regnamespace AND c.relname = $2`,
    [db.where, name],
  );
  return r.rows[0];
}

/** Opens a transaction that wrote a lease and leaves it open: a CREATE INDEX, plain or concurrent, waits for it. */
async function writerLeftOpen(db: TestDb): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`BEGIN; UPDATE ${db.where}.leases SET body = body WHERE key = '10.1.0.1'`);
  return c;
}

const buildWaiting = () =>
  until(async () => {
    const r = await adminQuery(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE query LIKE 'CREATE INDEX CONCURRENTLY leases_live_expiry %' AND wait_event_type = 'Lock'`,
    );
    return r.rows[0].n === 1;
  });

describe('PostgreSQL: an upgrade builds its indexes without holding lease writes', () => {
  skipUnavailable(pgBackend);

  it('v5 -> v6 with a lease write in progress: the start does not wait, lease writes go on, the index ends valid', async () => {
    const db = await pgBackend.db();
    await atV5(db);
    const open = await writerLeftOpen(db);
    const notes: IndexBuildNote[] = [];
    // In the migrations' transaction (before), the build's lock would wait for that writer: so would the start.
    const s = (await within(db.open({ onIndexBuild: (n) => notes.push(n) }), 5000, 'the start')) as PgStore;
    expect(s.schemaVersion).toBe(6);
    expect(await buildWaiting()).toBe(true);
    // While the build waits for the open transaction, this daemon's lease writes are not held behind it.
    await within(s.putBatched('leases', '10.1.99.1', { address: '10.1.99.1', state: 'bound' }), 3000, 'a lease write');
    expect(notes).toEqual([{ index: 'leases_live_expiry', phase: 'building' }]);
    await open.query('COMMIT');
    await open.end();
    await within(s.indexesBuilt, 10_000, 'the build');
    expect(notes[1]).toMatchObject({ index: 'leases_live_expiry', phase: 'built' });
    expect((await indexState(db, 'leases_live_expiry'))?.valid).toBe(true);
    await s.close();
  });

  it('a daemon stopped during the build leaves the index invalid; the next start drops it and builds it again', async () => {
    const db = await pgBackend.db();
    await atV5(db);
    const open = await writerLeftOpen(db);
    const first: IndexBuildNote[] = [];
    const s = await db.open({ onIndexBuild: (n) => first.push(n) });
    expect(await buildWaiting()).toBe(true);
    await within(s.close(), 5000, 'close during the build');
    expect(first.at(-1)).toEqual({ index: 'leases_live_expiry', phase: 'failed', error: 'stopped' });
    const left = await indexState(db, 'leases_live_expiry');
    expect(left?.valid).toBe(false);
    await open.query('COMMIT');
    await open.end();
    const again: IndexBuildNote[] = [];
    const s2 = (await db.open({ onIndexBuild: (n) => again.push(n) })) as PgStore;
    await within(s2.indexesBuilt, 10_000, 'the second build');
    expect(again.map((n) => n.phase)).toEqual(['building', 'built']);
    const now = await indexState(db, 'leases_live_expiry');
    expect(now?.valid).toBe(true);
    expect(now?.oid).not.toBe(left?.oid);
    await s2.close();
  });

  it('three daemons starting on a v5 schema at once: one of them builds the index', async () => {
    const db = await pgBackend.db();
    await atV5(db);
    const notes: IndexBuildNote[] = [];
    const stores = (await Promise.all(
      [1, 2, 3].map(() => db.open({ onIndexBuild: (n) => notes.push(n) })),
    )) as PgStore[];
    await Promise.all(stores.map((s) => within(s.indexesBuilt, 10_000, 'the builds')));
    expect(notes.filter((n) => n.phase === 'building')).toEqual([{ index: 'leases_live_expiry', phase: 'building' }]);
    expect(notes.filter((n) => n.phase === 'failed')).toEqual([]);
    expect((await indexState(db, 'leases_live_expiry'))?.valid).toBe(true);
    for (const s of stores) await s.close();
  });

  it('a new schema gets every index in its migrations, nothing built afterwards', async () => {
    const db = await pgBackend.db();
    const notes: IndexBuildNote[] = [];
    const s = (await db.open({ onIndexBuild: (n) => notes.push(n) })) as PgStore;
    await s.indexesBuilt;
    expect(notes).toEqual([]);
    for (const name of ['leases_tx_key', 'leases_live_expiry'])
      expect(await indexState(db, name), name).toMatchObject({ valid: true });
    expect(await indexState(db, 'leases_tx')).toBeUndefined();
    await s.close();
  });
});
