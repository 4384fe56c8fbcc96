/**
 * The connections the PostgreSQL batchers hold (src/store/pg-conn.ts): a claim batch or a putBatched batch whose
 * backend is terminated while it waits rejects each of its items (its outcome is unknown) and writes none of them;
 * the next batch reconnects and commits; a connection terminated while idle is replaced by the next batch too.
 * PostgreSQL only.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { BackendError, type Store } from '../../src/store/store.js';
import { adminQuery, backends, PG_URL } from './backends.js';
import { claim, lease, T0 } from './lease-fixture.js';

const b = backends(import.meta.filename).find((x) => x.name === 'postgres')!;

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Another session of the schema, holding a lease row's lock in an open transaction. */
async function locking(schema: string, key: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: PG_URL, options: `-c search_path=${schema}` });
  await c.connect();
  await c.query('BEGIN');
  await c.query('SELECT 1 FROM leases WHERE key = $1 FOR UPDATE', [key]);
  return c;
}

/** The backend waiting for `holder`'s lock: the store's connection whose batch is out. */
async function blockedBy(holder: pg.Client): Promise<number> {
  const [{ pid }] = (await holder.query('SELECT pg_backend_pid() AS pid')).rows;
  for (let i = 0; i < 200; i++) {
    const r = await adminQuery('SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [pid]);
    if (r.rows[0]) return r.rows[0].pid as number;
    await tick(10);
  }
  throw new Error('no backend waits for the lock');
}

/** Terminates `pid` and waits until the server has let it go. */
async function terminate(pid: number): Promise<void> {
  await adminQuery('SELECT pg_terminate_backend($1)', [pid]);
  for (let i = 0; i < 200; i++) {
    if (!(await adminQuery('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0]) return;
    await tick(10);
  }
  throw new Error(`backend ${pid} still there`);
}

/**
 * Starts `items` while another session holds `key`'s row lock, terminates the store's backend that waits for it,
 * and checks that every item was rejected as a backend failure (its outcome unknown).
 */
async function killedWhileBlocked(schema: string, key: string, items: () => Promise<unknown>[]): Promise<void> {
  const other = await locking(schema, key);
  try {
    const batch = Promise.allSettled(items());
    await terminate(await blockedBy(other));
    for (const r of await batch) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(BackendError);
    }
  } finally {
    await other.query('ROLLBACK');
    await other.end();
  }
}

const rows = async (schema: string, keys: string[]) =>
  (await adminQuery(`SELECT key FROM ${schema}.leases WHERE key = ANY($1) ORDER BY key`, [keys])).rows.map(
    (r) => r.key as string,
  );

describe.skipIf(!b.available)('PostgreSQL batch connections', () => {
  const open: Store[] = [];
  afterAll(async () => {
    for (const s of open) await s.close();
  });

  it('a claim batch whose connection is terminated rejects its claims; the next batch reconnects', async () => {
    const db = await b.db();
    const s = await db.open();
    open.push(s);
    expect((await claim(s, lease('10.0.5.1', 'ab:00:00:00:00:09', 'bound', { until: T0 - 1000 }))).ok).toBe(true);
    // One batch of two claims, waiting for the row lock.
    await killedWhileBlocked(db.where, '10.0.5.1', () => [
      claim(s, lease('10.0.5.1', 'ab:00:00:00:00:01')),
      claim(s, lease('10.0.5.2', 'ab:00:00:00:00:02')),
    ]);
    expect(await rows(db.where, ['10.0.5.2'])).toEqual([]);
    expect(
      await Promise.all([
        claim(s, lease('10.0.5.1', 'ab:00:00:00:00:01')),
        claim(s, lease('10.0.5.2', 'ab:00:00:00:00:02')),
      ]),
    ).toEqual([{ ok: true }, { ok: true }]);
    // A batch of one goes on the same connection, replaced as well.
    expect(await claim(s, lease('10.0.5.3', 'ab:00:00:00:00:03'))).toEqual({ ok: true });
    expect(await rows(db.where, ['10.0.5.1', '10.0.5.2', '10.0.5.3'])).toEqual(['10.0.5.1', '10.0.5.2', '10.0.5.3']);
  });

  it('a claim connection terminated while idle is replaced by the next batch', async () => {
    const db = await b.db();
    const s = await db.open();
    open.push(s);
    expect((await claim(s, lease('10.0.6.1', 'ac:00:00:00:00:09', 'bound', { until: T0 - 1000 }))).ok).toBe(true);
    // Which backend the claims use: the one that waits for a lock, then gets it.
    const other = await locking(db.where, '10.0.6.1');
    const first = claim(s, lease('10.0.6.1', 'ac:00:00:00:00:01'));
    const pid = await blockedBy(other);
    await other.query('COMMIT');
    await other.end();
    expect(await first).toEqual({ ok: true });
    await terminate(pid);
    expect(
      await Promise.all([
        claim(s, lease('10.0.6.2', 'ac:00:00:00:00:02')),
        claim(s, lease('10.0.6.3', 'ac:00:00:00:00:03')),
      ]),
    ).toEqual([{ ok: true }, { ok: true }]);
    expect(await claim(s, lease('10.0.6.4', 'ac:00:00:00:00:04'))).toEqual({ ok: true });
  });

  it('a putBatched batch whose connection is terminated rejects its writes; the next batch reconnects', async () => {
    const db = await b.db();
    const s = await db.open();
    open.push(s);
    await s.putBatched('leases', 'k1', { v: 0 });
    await killedWhileBlocked(db.where, 'k1', () => [
      s.putBatched('leases', 'k1', { v: 1 }),
      s.putBatched('leases', 'k2', { v: 1 }),
    ]);
    expect(await rows(db.where, ['k2'])).toEqual([]);
    await Promise.all([s.putBatched('leases', 'k1', { v: 2 }), s.putBatched('leases', 'k2', { v: 2 })]);
    expect((await s.get('leases', 'k1'))?.doc).toEqual({ v: 2 });
    expect((await s.get('leases', 'k2'))?.doc).toEqual({ v: 2 });
  });
});
