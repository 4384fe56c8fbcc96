/**
 * `Store.leaseChanges` on PostgreSQL in pages (here 3 rows): a pass from one cursor returns every row written
 * since, each once, across its pages, `more` until the last; a row rewritten, or written, while a pass is in
 * progress (after the target snapshot its first page took) is left to the next pass and comes there as it is
 * then, and so is a row of a transaction open across the pass's first page; a page longer than a parse slice comes
 * whole. PostgreSQL only, but for the parsing of a page a slice per event-loop turn (a fake pool).
 */
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { PARSE_SLICE, pgLeaseChanges } from '../../src/store/pg-lease-changes.js';
import type { LeaseChanges, Store } from '../../src/store/store.js';
import { backends, PG_URL, skipUnavailable } from './backends.js';
import { lease } from './lease-fixture.js';

const pgBackend = backends(import.meta.filename).find((b) => b.name === 'postgres')!;
const addr = (i: number) => `10.0.1.${i}`;
const put = (s: Store, i: number, mac = `52:54:00:00:01:${String(i).padStart(2, '0')}`) =>
  s.putBatched('leases', addr(i), lease(addr(i), mac));

/** One call: its rows as `address mac`, whether it said more, its cursor. */
async function page(s: Store, cursor: string) {
  const got: LeaseChanges = await s.leaseChanges!(cursor);
  return { rows: got.docs.map((d) => `${d.address} ${d.mac}`), more: got.more, cursor: got.cursor };
}

/** Every page of the pass from `cursor`: the rows of each, and the cursor after the last. */
async function pass(s: Store, cursor: string) {
  const pages: string[][] = [];
  for (let more = true; more; ) {
    const p = await page(s, cursor);
    pages.push(p.rows);
    cursor = p.cursor;
    more = p.more;
    if (pages.length > 20) throw new Error('a pass that does not end');
  }
  return { pages, rows: pages.flat(), cursor };
}

const open = async () => (await (await pgBackend.db()).open({ leasePageSize: 3 })) as Store & { pool: pg.Pool };

describe('lease changes in pages', () => {
  skipUnavailable(pgBackend);

  it('returns every row written since the cursor exactly once across the pages of a pass', async () => {
    const s = await open();
    const start = (await s.leaseChanges!()).cursor;
    // Five rows in one transaction (one turn's batch: one tx, paged by key within it), then three alone.
    await Promise.all([1, 2, 3, 4, 5].map((i) => put(s, i)));
    for (const i of [6, 7, 8]) await put(s, i);
    const p = await pass(s, start);
    expect(p.pages.map((x) => x.length)).toEqual([3, 3, 2]);
    expect(p.rows.map((r) => r.split(' ')[0]).sort()).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map(addr).sort());
    expect(new Set(p.rows).size).toBe(8);
    // From the pass's end: nothing more, in one page.
    expect(await page(s, p.cursor)).toMatchObject({ rows: [], more: false });
    // Exactly a page's worth: a full page says more, and the next is empty.
    for (const i of [9, 10, 11]) await put(s, i);
    const q = await pass(s, p.cursor);
    expect(q.pages.map((x) => x.length)).toEqual([3, 0]);
  });

  it('returns pages longer than a parse slice whole: every row once', async () => {
    const s = (await (await pgBackend.db()).open({ leasePageSize: 2 * PARSE_SLICE + 100 })) as Store;
    const start = (await s.leaseChanges!()).cursor;
    const n = 3 * PARSE_SLICE;
    const at = (i: number) => `10.0.${2 + (i >> 8)}.${i & 255}`;
    const hex = (b: number) => (b & 255).toString(16).padStart(2, '0');
    const mac = (i: number) => `52:54:00:02:${hex(i >> 8)}:${hex(i)}`;
    // One turn's batch: one transaction, whose rows come by key (the database's collation).
    await Promise.all(Array.from({ length: n }, (_, i) => s.putBatched('leases', at(i), lease(at(i), mac(i)))));
    const p = await pass(s, start);
    expect(p.pages.map((x) => x.length)).toEqual([2 * PARSE_SLICE + 100, PARSE_SLICE - 100]);
    const keys = Array.from({ length: n }, (_, i) => at(i)).sort();
    expect(p.rows.map((r) => r.split(' ')[0]).sort()).toEqual(keys);
    expect(new Set(p.rows).size).toBe(n);
  });

  it('leaves a row rewritten or written during a pass to the next pass, with its new body', async () => {
    const s = await open();
    const start = (await s.leaseChanges!()).cursor;
    for (const i of [1, 2, 3, 4, 5, 6]) await put(s, i);
    const first = await page(s, start);
    expect(first.rows.map((r) => r.split(' ')[0])).toEqual([1, 2, 3].map(addr));
    expect(first.more).toBe(true);
    // Between two pages: 5 (not read yet) and 1 (read) rewritten, 7 written.
    await put(s, 5, '52:54:00:00:0f:05');
    await put(s, 1, '52:54:00:00:0f:01');
    await put(s, 7);
    const rest = await pass(s, first.cursor);
    expect(rest.rows).toEqual([`${addr(4)} 52:54:00:00:01:04`, `${addr(6)} 52:54:00:00:01:06`]);
    const after = await pass(s, rest.cursor);
    expect(after.rows.sort()).toEqual(
      [`${addr(1)} 52:54:00:00:0f:01`, `${addr(5)} 52:54:00:00:0f:05`, `${addr(7)} 52:54:00:00:01:07`].sort(),
    );
  });

  it('does not lose the row of a transaction open across the first page of a pass', async () => {
    const s = await open();
    const start = (await s.leaseChanges!()).cursor;
    for (const i of [1, 2, 3, 4]) await put(s, i);
    // A writer that began before the pass and commits during it.
    const c = await s.pool.connect();
    try {
      await c.query('BEGIN');
      const doc = lease(addr(9), '52:54:00:00:01:09');
      await c.query(`INSERT INTO leases (key, doc, body, etag) VALUES ($1, $2::jsonb, $2, 'x')`, [
        addr(9),
        JSON.stringify(doc),
      ]);
      // One that began after it and committed before the pass: the pass's target sees it and not the open one
      // (in its list of transactions in progress, below its xmax).
      await put(s, 5);
      const first = await page(s, start);
      await c.query('COMMIT');
      const rest = await pass(s, first.cursor);
      expect(JSON.parse(first.cursor).to).toMatch(/^\d+:\d+:\d+$/);
      expect([...first.rows, ...rest.rows].map((r) => r.split(' ')[0]).sort()).toEqual(
        [1, 2, 3, 4, 5].map(addr).sort(),
      );
      expect((await pass(s, rest.cursor)).rows).toEqual([`${addr(9)} 52:54:00:00:01:09`]);
    } finally {
      c.release();
    }
  });

  it('pages a pass of a daemon with a serverId over the other daemons rows only', async () => {
    const db = await pgBackend.db();
    const a = await db.open({ serverId: 'rack-a', leasePageSize: 3 });
    const start = (await a.leaseChanges!()).cursor;
    // Interleaved: rack-a's rows between rack-b's are left out without shortening a page.
    for (let i = 1; i <= 8; i++)
      await a.putBatched(
        'leases',
        addr(i),
        lease(addr(i), `52:54:00:00:01:0${i}`, 'bound', { serverId: i % 2 ? 'rack-b' : 'rack-a' }),
      );
    const p = await pass(a, start);
    expect(p.pages.map((x) => x.length)).toEqual([3, 1]);
    expect(p.rows.map((r) => r.split(' ')[0])).toEqual([1, 3, 5, 7].map(addr));
  });
});

describe.skipIf(!PG_URL)('lease page size', () => {
  it('is a whole number of at least one', async () => {
    const db = await pgBackend.db();
    await expect(db.open({ leasePageSize: 0 })).rejects.toThrow(/leasePageSize 0/);
  });
});

describe('a page of lease changes', () => {
  it('is parsed a slice per turn of the event loop, its rows and cursor as in one go', async () => {
    const n = 3 * PARSE_SLICE;
    const parsed = new Set<number>();
    let parsedThen: number | undefined;
    const rows = Array.from({ length: n }, (_, i) => {
      const body = JSON.stringify(lease(`10.0.${i >> 8}.${i & 255}`, '52:54:00:00:01:01'));
      return {
        target: '100:100:',
        behind: false,
        key: `k${String(i).padStart(5, '0')}`,
        tx: '99',
        get body() {
          parsed.add(i);
          return body;
        },
      };
    });
    // The first page of a pass: a callback queued as its rows arrive runs before the last of them is parsed.
    const pool = {
      query: async () => {
        setImmediate(() => (parsedThen = parsed.size));
        return { rows };
      },
    } as unknown as pg.Pool;
    const got = await pgLeaseChanges(pool, undefined, n)('90:90:');
    await new Promise((r) => setImmediate(r));
    expect(parsedThen).toBe(PARSE_SLICE);
    expect(got.docs.map((d) => d.address)).toEqual(rows.map((_, i) => `10.0.${i >> 8}.${i & 255}`));
    expect(got.more).toBe(true);
    expect(JSON.parse(got.cursor)).toEqual({ from: '90:90:', to: '100:100:', tx: '99', key: rows[n - 1]!.key });
  });
});
