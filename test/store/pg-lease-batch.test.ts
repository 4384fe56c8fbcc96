/**
 * claimLease's batches on PostgreSQL (src/store/pg-lease-batch.ts): several in flight on separate connections, a
 * claim made while one batch waits for a lock commits without waiting for it; an address or a client is in one
 * batch in flight at most, in the order its claims were made; with one batch in flight (the old rule) the next
 * waits. A client's other row that another transaction rewrote while the claim waited is not released over it.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import type { Doc, Store } from '../../src/store/store.js';
import { adminQuery, backends, PG_URL } from './backends.js';
import { claim, lease, T0 } from './lease-fixture.js';

const b = backends(import.meta.filename).find((x) => x.name === 'postgres')!;

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether `p` has settled after `ms`. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await tick(ms);
  return done;
}

/** Another session of the test's schema: holds row locks across the store's claims. */
async function session(schema: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: PG_URL, options: `-c search_path=${schema}` });
  await c.connect();
  return c;
}

async function state(schema: string, address: string): Promise<{ state: string; mac: string } | undefined> {
  const r = await adminQuery(
    `SELECT doc ->> 'state' AS state, doc ->> 'mac' AS mac FROM ${schema}.leases WHERE key = $1`,
    [address],
  );
  return r.rows[0];
}

describe.skipIf(!b.available)('PostgreSQL lease claim batches', () => {
  const open: Store[] = [];
  afterAll(async () => {
    for (const s of open) await s.close();
  });

  it('a claim made while a batch waits for a row lock commits first; the waiting one follows once the lock goes', async () => {
    const db = await b.db();
    const s = await db.open({ claimsInFlight: { durable: 3, offers: 3 } });
    open.push(s);
    expect((await claim(s, lease('10.0.0.1', 'aa:00:00:00:00:01', 'bound', { until: T0 - 1000 }))).ok).toBe(true);
    const other = await session(db.where);
    try {
      await other.query('BEGIN');
      await other.query("SELECT 1 FROM leases WHERE key = '10.0.0.1' FOR UPDATE");
      const blocked = claim(s, lease('10.0.0.1', 'aa:00:00:00:00:02'));
      await tick(50);
      // Another address and client, a later turn: its own batch on another connection.
      const next = claim(s, lease('10.0.0.2', 'aa:00:00:00:00:03'));
      expect(await next).toEqual({ ok: true });
      expect(await settledWithin(blocked, 50)).toBe(false);
      await other.query('COMMIT');
      expect(await blocked).toEqual({ ok: true });
    } finally {
      await other.end();
    }
    expect(await state(db.where, '10.0.0.1')).toEqual({ state: 'bound', mac: 'aa:00:00:00:00:02' });
  });

  it("a client's or an address's later claim waits for its batch in flight, and they commit in order", async () => {
    const db = await b.db();
    const s = await db.open({ claimsInFlight: { durable: 3, offers: 3 } });
    open.push(s);
    expect((await claim(s, lease('10.0.1.1', 'bb:00:00:00:00:09', 'bound', { until: T0 - 1000 }))).ok).toBe(true);
    expect((await claim(s, lease('10.0.1.5', 'bb:00:00:00:00:08', 'bound', { until: T0 - 1000 }))).ok).toBe(true);
    const other = await session(db.where);
    try {
      await other.query('BEGIN');
      await other.query("SELECT 1 FROM leases WHERE key IN ('10.0.1.1', '10.0.1.5') FOR UPDATE");
      const first = claim(s, lease('10.0.1.1', 'bb:00:00:00:00:01'));
      await tick(50);
      const byAddress = claim(s, lease('10.0.1.5', 'bb:00:00:00:00:05'));
      await tick(50);
      // The same client elsewhere, and the same address for another client: each waits for its batch.
      const sameClient = claim(s, lease('10.0.1.2', 'bb:00:00:00:00:01'));
      const sameAddress = claim(s, lease('10.0.1.5', 'bb:00:00:00:00:06'));
      const unrelated = claim(s, lease('10.0.1.3', 'bb:00:00:00:00:03'));
      expect(await unrelated).toEqual({ ok: true });
      expect(await settledWithin(sameClient, 50)).toBe(false);
      expect(await settledWithin(sameAddress, 0)).toBe(false);
      await other.query('COMMIT');
      expect(await first).toEqual({ ok: true });
      expect(await byAddress).toEqual({ ok: true });
      // After `first`: the client moves to .2 and releases .1.
      expect(await sameClient).toEqual({ ok: true });
      // After `byAddress`: .5 is bb:..:05's, and the later claim loses to it.
      const lost = await sameAddress;
      expect(lost.ok).toBe(false);
      expect((lost as { holder?: Doc }).holder?.mac).toBe('bb:00:00:00:00:05');
    } finally {
      await other.end();
    }
    expect(await state(db.where, '10.0.1.1')).toEqual({ state: 'released', mac: 'bb:00:00:00:00:01' });
    expect(await state(db.where, '10.0.1.2')).toEqual({ state: 'bound', mac: 'bb:00:00:00:00:01' });
  });

  it('with one batch in flight, the next waits for it', async () => {
    const db = await b.db();
    const s = await db.open({ claimsInFlight: { durable: 1, offers: 1 } });
    open.push(s);
    expect((await claim(s, lease('10.0.2.1', 'cc:00:00:00:00:09', 'bound', { until: T0 - 1000 }))).ok).toBe(true);
    const other = await session(db.where);
    try {
      await other.query('BEGIN');
      await other.query("SELECT 1 FROM leases WHERE key = '10.0.2.1' FOR UPDATE");
      const blocked = claim(s, lease('10.0.2.1', 'cc:00:00:00:00:01'));
      await tick(50);
      const next = claim(s, lease('10.0.2.2', 'cc:00:00:00:00:02'));
      expect(await settledWithin(next, 150)).toBe(false);
      await other.query('COMMIT');
      expect(await Promise.all([blocked, next])).toEqual([{ ok: true }, { ok: true }]);
    } finally {
      await other.end();
    }
  });

  it("a client's other row rewritten by another transaction while the claim waited is not released over it", async () => {
    const db = await b.db();
    const s = await db.open();
    open.push(s);
    // dd:..:01 holds .1 (ended by time, still 'bound'), and binds .2: the claim releases .1 ...
    expect((await claim(s, lease('10.0.3.1', 'dd:00:00:00:00:01', 'bound', { until: T0 - 1000 }))).ok).toBe(true);
    const other = await session(db.where);
    try {
      // ... while another daemon gives .1 to dd:..:02 and has not committed: the release waits for that row.
      await other.query('BEGIN');
      const body = JSON.stringify(lease('10.0.3.1', 'dd:00:00:00:00:02'));
      await other.query("UPDATE leases SET doc = $1::jsonb, body = $1, etag = 'other' WHERE key = '10.0.3.1'", [body]);
      // Batches of one and of several: the single statement and the batch's.
      const one = claim(s, lease('10.0.3.2', 'dd:00:00:00:00:01'));
      await tick(100);
      await other.query('COMMIT');
      expect(await one).toEqual({ ok: true });
    } finally {
      await other.end();
    }
    expect(await state(db.where, '10.0.3.1')).toEqual({ state: 'bound', mac: 'dd:00:00:00:00:02' });
    expect(await state(db.where, '10.0.3.2')).toEqual({ state: 'bound', mac: 'dd:00:00:00:00:01' });

    // The same in a batch of several claims.
    expect((await claim(s, lease('10.0.4.1', 'ee:00:00:00:00:01', 'bound', { until: T0 - 1000 }))).ok).toBe(true);
    const again = await session(db.where);
    try {
      await again.query('BEGIN');
      const body = JSON.stringify(lease('10.0.4.1', 'ee:00:00:00:00:02'));
      await again.query("UPDATE leases SET doc = $1::jsonb, body = $1, etag = 'other' WHERE key = '10.0.4.1'", [body]);
      const many = Promise.all([
        claim(s, lease('10.0.4.2', 'ee:00:00:00:00:01')),
        claim(s, lease('10.0.4.3', 'ee:00:00:00:00:03')),
        claim(s, lease('10.0.4.4', 'ee:00:00:00:00:04')),
      ]);
      await tick(100);
      await again.query('COMMIT');
      expect(await many).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
    } finally {
      await again.end();
    }
    expect(await state(db.where, '10.0.4.1')).toEqual({ state: 'bound', mac: 'ee:00:00:00:00:02' });
    expect(await state(db.where, '10.0.4.2')).toEqual({ state: 'bound', mac: 'ee:00:00:00:00:01' });
  });
});
