/**
 * claimLease, the contract on both backends (issue 17: several daemons serving one subnet): a free address is
 * won, a live lease of another client is not (and its holder is returned), an ended one is reused, the same
 * client renews, a quarantined DECLINE holds; two stores on one database racing for one address: exactly one
 * wins; 200 claims at once from two connections on a 50-address pool: no address given twice, no client with two
 * addresses (checked in SQL on the tables themselves).
 */
import Database from 'better-sqlite3';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { withOption } from '../../src/store/pg.js';
import type { Doc, Store } from '../../src/store/store.js';
import { adminQuery, type Backend, backends, PG_URL, skipUnavailable, type TestDb } from './backends.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const NOW = iso(T0);

type Who = { mac: string; clientId?: string };
const lease = (
  address: string,
  c: Who,
  state = 'offered',
  until = T0 + 30_000,
  subnet = 'lab',
): Doc & {
  address: string;
  subnet: string;
  mac: string;
  state: string;
} => ({
  address,
  subnet,
  mac: c.mac,
  ...(c.clientId ? { clientId: c.clientId } : {}),
  state,
  expiresAt: iso(until),
  updatedAt: NOW,
});
const mac = (i: number) =>
  `52:54:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
const claim = (s: Store, doc: ReturnType<typeof lease>, now = NOW) => s.claimLease!({ doc, now });

/** Rows of the leases table read with SQL, not through the store: (address, subnet, state, client key). */
async function rows(
  db: TestDb,
  b: Backend,
): Promise<{ address: string; subnet: string; state: string; client: string; mac: string }[]> {
  if (b.name === 'postgres') {
    const r = await adminQuery(
      `SELECT key AS address, doc ->> 'subnet' AS subnet, doc ->> 'state' AS state, doc ->> 'mac' AS mac,
         coalesce(doc ->> 'clientId', doc ->> 'mac') AS client FROM ${db.where}.leases ORDER BY key`,
    );
    return r.rows;
  }
  const d = new Database(db.where, { readonly: true });
  try {
    return d
      .prepare(
        `SELECT key AS address, json_extract(doc, '$.subnet') AS subnet, json_extract(doc, '$.state') AS state,
           json_extract(doc, '$.mac') AS mac, coalesce(json_extract(doc, '$.clientId'), json_extract(doc, '$.mac')) AS client
         FROM leases ORDER BY key`,
      )
      .all() as never;
  } finally {
    d.close();
  }
}

/** Clients with more than one offered/bound row in a subnet, by SQL GROUP BY on the table. */
async function clientsTwice(db: TestDb, b: Backend): Promise<unknown[]> {
  if (b.name === 'postgres') {
    const r = await adminQuery(
      `SELECT doc ->> 'subnet' AS s, coalesce(doc ->> 'clientId', doc ->> 'mac') AS c, count(*) AS n FROM ${db.where}.leases
       WHERE doc ->> 'state' IN ('offered', 'bound') GROUP BY 1, 2 HAVING count(*) > 1`,
    );
    return r.rows;
  }
  const d = new Database(db.where, { readonly: true });
  try {
    return d
      .prepare(
        `SELECT json_extract(doc, '$.subnet') AS s, coalesce(json_extract(doc, '$.clientId'), json_extract(doc, '$.mac')) AS c, count(*) AS n
         FROM leases WHERE json_extract(doc, '$.state') IN ('offered', 'bound') GROUP BY 1, 2 HAVING count(*) > 1`,
      )
      .all();
  } finally {
    d.close();
  }
}

describe.each(backends(import.meta.filename))('claimLease on $name', (b) => {
  skipUnavailable(b);

  it('a free address is won and stored as given; a live lease of another client is not, and names its holder', async () => {
    const s = await (await b.db()).open();
    const a = { mac: mac(1) };
    const doc = lease('10.0.0.10', a);
    expect(await claim(s, doc)).toEqual({ ok: true });
    const got = await s.get('leases', '10.0.0.10');
    expect(got?.json).toBe(JSON.stringify(doc));
    const lost = await claim(s, lease('10.0.0.10', { mac: mac(2) }, 'bound'));
    expect(lost.ok).toBe(false);
    expect(lost.ok === false && lost.holder?.mac).toBe(mac(1));
    expect((await s.get('leases', '10.0.0.10'))?.doc.mac).toBe(mac(1));
  });

  it('an ended lease (by time, released, expired) is reused; a quarantined DECLINE holds until it ends', async () => {
    const s = await (await b.db()).open();
    await claim(s, lease('10.0.0.1', { mac: mac(1) }, 'bound', T0 + 1000));
    // Past its end by the claimant's clock: taken over.
    expect(await claim(s, lease('10.0.0.1', { mac: mac(2) }), iso(T0 + 1000))).toEqual({ ok: true });
    await claim(s, lease('10.0.0.2', { mac: mac(3) }, 'released', T0 + 60_000));
    expect(await claim(s, lease('10.0.0.2', { mac: mac(4) }))).toEqual({ ok: true });
    await claim(s, lease('10.0.0.3', { mac: mac(5) }, 'declined', T0 + 60_000));
    // The DECLINE's own client cannot take it back during the quarantine either.
    expect((await claim(s, lease('10.0.0.3', { mac: mac(5) }))).ok).toBe(false);
    expect(await claim(s, lease('10.0.0.3', { mac: mac(6) }), iso(T0 + 60_000))).toEqual({ ok: true });
  });

  it('the same client renews (by identifier when both have one, else MAC); another identifier behind the MAC does not', async () => {
    const s = await (await b.db()).open();
    expect(await claim(s, lease('10.0.0.5', { mac: mac(1) }))).toEqual({ ok: true });
    // A PXE ROM's lease without 61, the OS with 61 after it: one client.
    expect(await claim(s, lease('10.0.0.5', { mac: mac(1), clientId: '01aa' }, 'bound', T0 + 3600_000))).toEqual({
      ok: true,
    });
    expect(await claim(s, lease('10.0.0.5', { mac: mac(1), clientId: '01aa' }, 'bound', T0 + 7200_000))).toEqual({
      ok: true,
    });
    // Dual boot: the other OS's identifier, same MAC, is another client.
    expect((await claim(s, lease('10.0.0.5', { mac: mac(1), clientId: '01bb' }))).ok).toBe(false);
    expect((await s.get('leases', '10.0.0.5'))?.doc.expiresAt).toBe(iso(T0 + 7200_000));
    // A daemon reclaiming the lease it saw end (its own older copy) leaves the renewed one alone.
    const stale = lease('10.0.0.5', { mac: mac(1), clientId: '01aa' }, 'expired', T0 + 3600_000);
    expect((await claim(s, stale, iso(T0 + 3600_000))).ok).toBe(false);
    expect((await s.get('leases', '10.0.0.5'))?.doc.state).toBe('bound');
    expect(await claim(s, stale, iso(T0 + 7200_000))).toEqual({ ok: true });
  });

  it("a live claim at a new address releases the client's other live lease in the subnet, not in another subnet", async () => {
    const db = await b.db();
    const s = await db.open();
    const c = { mac: mac(7) };
    await claim(s, lease('10.0.0.7', c, 'bound', T0 + 3600_000));
    await claim(s, lease('10.1.0.7', c, 'bound', T0 + 3600_000, 'other'));
    // An offer elsewhere loses to the client's live lease and names it; a bind (a REQUEST) moves the client.
    expect(await claim(s, lease('10.0.0.8', c))).toMatchObject({ ok: false, holder: { address: '10.0.0.7' } });
    expect(await claim(s, lease('10.0.0.8', c, 'bound'))).toEqual({ ok: true });
    const byAddr = Object.fromEntries((await rows(db, b)).map((r) => [r.address, r.state]));
    expect(byAddr).toEqual({ '10.0.0.7': 'released', '10.0.0.8': 'bound', '10.1.0.7': 'bound' });
    // A losing claim releases nothing.
    await claim(s, lease('10.0.0.9', { mac: mac(8) }));
    expect((await claim(s, lease('10.0.0.9', c, 'bound'))).ok).toBe(false);
    expect((await s.get('leases', '10.0.0.8'))?.doc.state).toBe('bound');
    // An ended lease of the client elsewhere does not stop an offer, and is released by it.
    await claim(s, lease('10.0.0.8', c, 'bound', T0 + 1000));
    expect(await claim(s, lease('10.0.0.10', c), iso(T0 + 1000))).toEqual({ ok: true });
    expect((await s.get('leases', '10.0.0.8'))?.doc.state).toBe('released');
  });

  it("a late offer never undoes a bind: it keeps the client's bound lease, and cannot release it elsewhere", async () => {
    const db = await b.db();
    const s = await db.open();
    const c = { mac: mac(9) };
    await claim(s, lease('10.0.0.20', c, 'bound', T0 + 3600_000));
    // Another daemon offers the client the address it has bound: the offer stands, the lease is untouched.
    expect(await claim(s, lease('10.0.0.20', c, 'offered', T0 + 30_000))).toEqual({ ok: true });
    expect((await s.get('leases', '10.0.0.20'))?.doc).toMatchObject({ state: 'bound', expiresAt: iso(T0 + 3600_000) });
    // An offer of another address loses to the lease in force and names it.
    const lost = await claim(s, lease('10.0.0.21', c));
    expect(lost).toMatchObject({ ok: false, holder: { address: '10.0.0.20', state: 'bound' } });
    expect((await rows(db, b)).map((r) => [r.address, r.state])).toEqual([['10.0.0.20', 'bound']]);
    // A bind elsewhere (the client REQUESTed it) moves the client: its old lease is released.
    expect(await claim(s, lease('10.0.0.21', c, 'bound', T0 + 3600_000))).toEqual({ ok: true });
    // Two offers to one client (two daemons answering one DISCOVER): the second loses to the first and names it.
    const d = { mac: mac(10) };
    await claim(s, lease('10.0.0.30', d));
    expect(await claim(s, lease('10.0.0.31', d))).toMatchObject({ ok: false, holder: { address: '10.0.0.30' } });
    expect(await claim(s, lease('10.0.0.30', d))).toEqual({ ok: true });
    expect((await rows(db, b)).map((r) => [r.address, r.state])).toEqual([
      ['10.0.0.20', 'released'],
      ['10.0.0.21', 'bound'],
      ['10.0.0.30', 'offered'],
    ]);
  });

  it('two stores on one database racing for one address: exactly one wins, each time', async () => {
    const db = await b.db();
    const [s1, s2] = [await db.open(), await db.open()];
    for (let i = 0; i < 20; i++) {
      const address = `10.0.1.${i}`;
      const r = await Promise.all([
        claim(s1, lease(address, { mac: mac(100 + i) })),
        claim(s2, lease(address, { mac: mac(200 + i) })),
      ]);
      expect(r.filter((x) => x.ok)).toHaveLength(1);
      const winner = r[0]!.ok ? mac(100 + i) : mac(200 + i);
      expect((await s1.get('leases', address))?.doc.mac).toBe(winner);
    }
  });

  it('claims made in one turn (one statement on PostgreSQL): one per address wins, a client claiming thrice keeps one', async () => {
    const db = await b.db();
    const [s1, s2] = [await db.open(), await db.open()];
    const c = { mac: mac(400) };
    const r = await Promise.all([
      claim(s1, lease('10.0.3.1', { mac: mac(401) })),
      claim(s1, lease('10.0.3.1', { mac: mac(402) })),
      claim(s1, lease('10.0.3.2', c, 'bound')),
      claim(s1, lease('10.0.3.3', c, 'bound')),
      claim(s2, lease('10.0.3.4', c, 'bound')),
      ...Array.from({ length: 20 }, (_, i) => claim(s1, lease(`10.0.3.${10 + i}`, { mac: mac(410 + i) }))),
    ]);
    expect(r.slice(0, 2).filter((x) => x.ok)).toHaveLength(1);
    expect(r.slice(5).every((x) => x.ok)).toBe(true);
    expect(await clientsTwice(db, b)).toEqual([]);
    const all = await rows(db, b);
    expect(all.find((x) => x.address === '10.0.3.1')?.mac).toBe(r[0]!.ok ? mac(401) : mac(402));
    // The client's one live row is one of the addresses it won.
    const mine = all.filter((x) => x.mac === c.mac && x.state === 'bound').map((x) => x.address);
    const wonBy = ['10.0.3.2', '10.0.3.3', '10.0.3.4'].filter((_, i) => r[2 + i]!.ok);
    expect(mine).toHaveLength(1);
    expect(wonBy).toContain(mine[0]);
    for (let i = 0; i < 20; i++) expect(all.find((x) => x.address === `10.0.3.${10 + i}`)?.state).toBe('offered');
    // One client bound at once through both stores, each in a batch with others' claims, 20 times: on PostgreSQL
    // the loser's whole batch fails at COMMIT on the one-live-row constraint and is run claim by claim, so the
    // others in it still win.
    for (let round = 0; round < 20; round++) {
      const d = { mac: mac(500 + round) };
      const others = (s: Store, base: number) =>
        Array.from({ length: 5 }, (_, i) =>
          claim(s, lease(`10.${10 + round}.4.${base + i}`, { mac: mac(600 + round * 10 + base + i) })),
        );
      const a = `10.0.5.${round * 2}`;
      const z = `10.0.5.${round * 2 + 1}`;
      const got = await Promise.all([
        claim(s1, lease(a, d, 'bound')),
        claim(s2, lease(z, d, 'bound')),
        ...others(s1, 0),
        ...others(s2, 5),
      ]);
      expect(got.filter((x) => x.ok).length).toBeGreaterThanOrEqual(1 + 8);
      const now = await rows(db, b);
      const live = now.filter((x) => x.mac === d.mac && x.state === 'bound').map((x) => x.address);
      expect(live).toHaveLength(1);
      expect([a, z].filter((_, i) => got[i]!.ok)).toContain(live[0]);
    }
    expect(await clientsTwice(db, b)).toEqual([]);
  });

  it.skipIf(b.name !== 'postgres')(
    'PostgreSQL: a batch that fails at COMMIT on the one-live-row constraint is run claim by claim, and the others win',
    async () => {
      const db = await b.db();
      const s = await db.open();
      const c = { mac: mac(700) };
      // Another daemon's transaction gives the client a lease and has not committed when the batch runs: the
      // batch cannot see it, and its COMMIT waits for it, then fails (23P01).
      const other = new pg.Client({ connectionString: PG_URL, options: `-c search_path=${db.where}` });
      await other.connect();
      try {
        await other.query('BEGIN');
        const body = JSON.stringify(lease('10.0.6.99', c, 'bound', T0 + 3600_000));
        await other.query("INSERT INTO leases (key, doc, body, etag) VALUES ('10.0.6.99', $1::jsonb, $1, 'x')", [body]);
        const pending = Promise.all([
          claim(s, lease('10.0.6.1', c, 'bound', T0 + 3600_000)),
          ...Array.from({ length: 5 }, (_, i) => claim(s, lease(`10.0.6.${10 + i}`, { mac: mac(710 + i) }, 'bound'))),
        ]);
        await new Promise((r) => setTimeout(r, 300));
        await other.query('COMMIT');
        const got = await pending;
        // Run alone, the client's bind sees the committed lease and moves the client; the others win as well.
        expect(got).toEqual(got.map(() => ({ ok: true })));
      } finally {
        await other.end();
      }
      const all = await rows(db, b);
      expect(all.find((x) => x.address === '10.0.6.99')?.state).toBe('released');
      expect(all.find((x) => x.address === '10.0.6.1')?.state).toBe('bound');
      expect(all.filter((x) => x.address.startsWith('10.0.6.1') && x.state === 'bound')).toHaveLength(6);
      expect(await clientsTwice(db, b)).toEqual([]);
    },
  );

  it('200 clients claiming at once from two connections on a 50-address pool: no address twice, no client twice', async () => {
    const db = await b.db();
    const stores = [await db.open(), await db.open()];
    const won = new Map<number, string>(); // client -> the address it won last
    const tryClient = async (i: number) => {
      const c = { mac: mac(1000 + i), ...(i % 3 === 0 ? { clientId: `01${i.toString(16).padStart(4, '0')}` } : {}) };
      // Each client asks both connections in turn, from its own starting point, as two daemons would be asked.
      for (let t = 0; t < 8; t++) {
        const address = `10.0.2.${(i * 7 + t * 13) % 50}`;
        const r = await claim(stores[(i + t) % 2]!, lease(address, c, t % 2 ? 'bound' : 'offered'));
        if (r.ok) won.set(i, address);
      }
    };
    await Promise.all(Array.from({ length: 200 }, (_, i) => tryClient(i)));
    expect(await clientsTwice(db, b)).toEqual([]);
    const live = (await rows(db, b)).filter((r) => r.state === 'offered' || r.state === 'bound');
    expect(live.length).toBeGreaterThan(0);
    expect(live.length).toBeLessThanOrEqual(50);
    // Every live row is the last address its client won: no claim overwrote another client's live lease.
    for (const r of live) {
      const i = Number.parseInt(r.mac.slice(-5).replace(':', ''), 16) - 1000;
      expect(won.get(i)).toBe(r.address);
    }
    // And every client whose last win is live holds exactly it (a later claim of its own may have released it).
    const liveBy = new Map(live.map((r) => [r.address, r.mac]));
    for (const [i, address] of won) if (liveBy.has(address)) expect(liveBy.get(address)).toBe(mac(1000 + i));
  });

  it.skipIf(b.name !== 'postgres')(
    "PostgreSQL: the offers' connections commit asynchronously, keeping the schema and the URL's own options",
    async () => {
      const url = new URL(PG_URL!);
      url.searchParams.set('options', '-c application_name=from-url');
      const c = new pg.Client(
        withOption(url.toString(), { options: '-c search_path=some_schema' }, '-c synchronous_commit=off'),
      );
      await c.connect();
      try {
        const r = await c.query(
          "SELECT current_setting('synchronous_commit') AS sc, current_setting('search_path') AS sp, current_setting('application_name') AS app",
        );
        expect(r.rows[0]).toEqual({ sc: 'off', sp: 'some_schema', app: 'from-url' });
      } finally {
        await c.end();
      }
    },
  );
});
