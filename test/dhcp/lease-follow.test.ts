/**
 * A catch-up learns a page of the other daemons' rows a slice at a time (src/dhcp/lease-follow.ts): a page is up
 * to 5,000 rows, and one event-loop turn for all of them would hold the DHCP packets queued behind it. So a
 * callback queued when the page arrives runs before the page is learnt; the events still come in the rows' order,
 * every one; an address this daemon writes between two slices is left alone; and the cursor still moves per page,
 * so a failed page is read again and the pages before it are not. No read of one address has the index go back to
 * an older row, whichever two overlap (a page, a refresh, a lost claim's holder row, a won claim, a delete): a read
 * sent after the other returned wins, and reads that overlapped (no known order) have the address read again. A
 * fake paged `leaseChanges` and claims over SQLite (held promises for the timing), so this runs without PostgreSQL
 * (test/dhcp/shared-leases.test.ts has pages on PostgreSQL's own).
 */
import { describe, expect, it } from 'vitest';
import { LEARN_SLICE } from '../../src/dhcp/lease-follow.js';
import { loadLeaseTable } from '../../src/dhcp/leases.js';
import { createBus } from '../../src/events.js';
import type { SubnetInfo } from '../../src/inventory/cache.js';
import { silentLogger } from '../../src/log.js';
import { ipToInt, parseCidr } from '../../src/model/common.js';
import type { Lease } from '../../src/model/subnet.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { ClaimResult, LeaseChanges, Store, Stored } from '../../src/store/store.js';
import { SUBNET } from './helpers.js';

const big: SubnetInfo = {
  ...(SUBNET as SubnetInfo),
  net: parseCidr('10.99.0.0/16'),
  start: ipToInt('10.99.0.10'),
  end: ipToInt('10.99.255.209'),
};

/** `n` rows another daemon bound, from the `from`th address of the range. */
const rows = (n: number, from = 0): Lease[] =>
  Array.from({ length: n }, (_, i) => {
    const ip = big.start + from + i;
    const address = [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].join('.');
    const mac = `52:54:00:00:${((from + i) >> 8) & 255}:${(from + i) & 255}`;
    return { address, mac, subnet: 'lab', state: 'bound', expiresAt: '2099-01-01T00:00:00.000Z', serverId: 'rack-b' };
  });

/**
 * A shared store whose `leaseChanges` returns `pages` one by one (cursor `pK`: page K), failing the reads
 * `failAt` counts (1-based); `onPage` runs as each page is returned. `reads`: the cursors asked for.
 */
function pagedStore(pages: Lease[][], o: { failAt?: number[]; onPage?: (k: number) => void } = {}) {
  const base = openSqliteStore(':memory:');
  const reads: string[] = [];
  let calls = 0;
  const leaseChanges = async (cursor?: string): Promise<LeaseChanges> => {
    if (cursor === undefined) return { cursor: 'p0', docs: [], more: false };
    reads.push(cursor);
    if (o.failAt?.includes(++calls)) throw new Error('connection lost');
    const k = Number(cursor.slice(1));
    if (k >= pages.length) return { cursor, docs: [], more: false };
    o.onPage?.(k);
    return { cursor: `p${k + 1}`, docs: pages[k]!, more: k + 1 < pages.length };
  };
  const store: Store = { ...base, sharedLeases: true, claimLease: base.claimLease, leaseChanges };
  return { store, reads };
}

async function follower(store: Store) {
  const bus = createBus();
  const heard: string[] = [];
  bus.on((e) => {
    if (e.type.startsWith('lease.')) heard.push(`${e.type} ${e.key}`);
  });
  const leases = await loadLeaseTable({ store, bus, log: silentLogger, scanStart: () => 0, serverId: 'rack-a' });
  return { leases, heard };
}

describe('catch-up in slices', () => {
  it('lets a callback queued when a 2,000-row page arrives run before the page is learnt, events in order, all', async () => {
    const page = rows(2000);
    let heardThen: number | undefined;
    let heard: string[] = [];
    const { store } = pagedStore([page], {
      onPage: () => setImmediate(() => (heardThen = heard.length)),
    });
    const f = await follower(store);
    heard = f.heard;
    expect(await f.leases.catchUp()).toBe(2000);
    // The callback ran while the page was being learnt: after the first slice, before the last.
    expect(heardThen).toBeGreaterThan(0);
    expect(heardThen).toBeLessThan(2000);
    expect(heard).toEqual(page.map((d) => `lease.acked ${d.address}`));
    expect(f.leases.get(page[1999]!.address)).toMatchObject({ mac: page[1999]!.mac, serverId: 'rack-b' });
  });

  it('leaves alone an address this daemon binds between two slices', async () => {
    const page = rows(3 * LEARN_SLICE);
    const late = page[2 * LEARN_SLICE + 7]!.address;
    let bound: Promise<unknown> | undefined;
    let f: Awaited<ReturnType<typeof follower>> | undefined;
    const { store } = pagedStore([page], {
      onPage: () => setImmediate(() => (bound = f!.leases.bind(big, { mac: '52:54:00:ff:00:01' }, late, 3600))),
    });
    f = await follower(store);
    expect(await f.leases.catchUp()).toBe(3 * LEARN_SLICE - 1);
    await bound;
    expect(f.leases.get(late)).toMatchObject({ mac: '52:54:00:ff:00:01', state: 'bound', serverId: 'rack-a' });
  });

  it('moves the cursor per page: a failed page is read again at the next catch-up, the pages before it are not', async () => {
    const pages = [rows(1200), rows(1200, 1200), rows(10, 2400)];
    const { store, reads } = pagedStore(pages, { failAt: [2] });
    const f = await follower(store);
    await expect(f.leases.catchUp()).rejects.toThrow('connection lost');
    expect(f.heard).toHaveLength(1200);
    expect(f.leases.get(pages[1]![0]!.address)).toBeUndefined();
    expect(await f.leases.catchUp()).toBe(1210);
    expect(reads).toEqual(['p0', 'p1', 'p1', 'p2']);
    expect(f.heard).toEqual(pages.flat().map((d) => `lease.acked ${d.address}`));
  });
});

/** A promise the test settles. */
function held<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** One turn of the event loop (a catch-up learns a slice per turn). */
const turn = () => new Promise<void>((r) => setImmediate(r));

/**
 * A shared store whose catch-up reads wait for the test (`pages`, answered with `page(docs)`) and whose `get` of a
 * lease answers at once with `db` (the rows as stored now), but for the first `holdGets`, which wait in `gets`;
 * with `holdClaims`, its claims wait in `claims` (answered with a ClaimResult) and write nothing.
 */
function heldStore(holdGets = 0, holdClaims = false) {
  const base = openSqliteStore(':memory:');
  const pages: { promise: Promise<LeaseChanges>; resolve: (v: LeaseChanges) => void }[] = [];
  const gets: { promise: Promise<Lease | undefined>; resolve: (v: Lease | undefined) => void }[] = [];
  const claims: { promise: Promise<ClaimResult>; resolve: (v: ClaimResult) => void }[] = [];
  const db = new Map<string, Lease>();
  const asked: string[] = [];
  const stored = (d: Lease | undefined): Stored | undefined =>
    d && { key: d.address, doc: d, etag: 'x', json: JSON.stringify(d) };
  const store: Store = {
    ...base,
    sharedLeases: true,
    claimLease: (c) => {
      if (!holdClaims) return base.claimLease!(c);
      const h = held<ClaimResult>();
      claims.push(h);
      return h.promise;
    },
    leaseChanges: (cursor?: string) => {
      if (cursor === undefined) return Promise.resolve({ cursor: 'p0', docs: [], more: false });
      const h = held<LeaseChanges>();
      pages.push(h);
      return h.promise;
    },
    get: (kind, key) => {
      if (kind !== 'leases') return base.get(kind, key);
      asked.push(key);
      if (gets.length >= holdGets) return Promise.resolve(stored(db.get(key)));
      const h = held<Lease | undefined>();
      gets.push(h);
      return h.promise.then(stored);
    },
  };
  const page = (docs: Lease[]): LeaseChanges => ({ cursor: 'p1', docs, more: false });
  return { store, pages, gets, claims, db, asked, page };
}

/** A page of three slices, its row at `late` in the last one; `other(mac)`: another version of that row. */
function lateRow() {
  const docs = rows(3 * LEARN_SLICE);
  const row = docs[2 * LEARN_SLICE + 7]!;
  const other = (mac: string): Lease => ({ ...row, mac, expiresAt: '2099-02-01T00:00:00.000Z' });
  return { docs, late: row.address, row, other };
}

// A client the index does not hold the address live for, so that refresh reads the store.
const stranger = { mac: '52:54:00:ee:ee:ee' };

describe('a refresh and a catch-up', () => {
  it('keeps the row a refresh sent after the page returned found: the page does not bring back its older one', async () => {
    const s = heldStore();
    const { docs, late, other } = lateRow();
    const f = await follower(s.store);
    const caught = f.leases.catchUp()!;
    s.pages[0]!.resolve(s.page(docs));
    await turn(); // the page returned and its first slice is learnt; its row at `late` is two slices on
    expect(f.leases.get(docs[0]!.address)).toBeDefined();
    s.db.set(late, other('52:54:00:aa:00:01'));
    await f.leases.refresh(late, stranger);
    expect(f.leases.get(late)).toMatchObject({ mac: '52:54:00:aa:00:01' });
    expect(await caught).toBe(3 * LEARN_SLICE - 1);
    expect(f.leases.get(late)).toMatchObject({ mac: '52:54:00:aa:00:01' });
    expect(s.asked).toEqual([late]);
  });

  it('keeps out the row of a page older than a refresh that found no row (deleted since)', async () => {
    const s = heldStore();
    const { docs, late } = lateRow();
    const f = await follower(s.store);
    const caught = f.leases.catchUp()!;
    s.pages[0]!.resolve(s.page(docs));
    await turn();
    await f.leases.refresh(late, stranger);
    expect(await caught).toBe(3 * LEARN_SLICE - 1);
    expect(f.leases.get(late)).toBeUndefined();
  });

  it('reads the address again when a refresh overlapping the page came back before its row was learnt', async () => {
    const s = heldStore(1);
    const { docs, late, other } = lateRow();
    const f = await follower(s.store);
    // Sent before the page, back after it: in no known order with it.
    const refreshed = f.leases.refresh(late, stranger)!;
    const caught = f.leases.catchUp()!;
    s.pages[0]!.resolve(s.page(docs));
    await turn();
    s.gets[0]!.resolve(other('52:54:00:aa:00:01'));
    await refreshed;
    expect(f.leases.get(late)).toMatchObject({ mac: '52:54:00:aa:00:01' });
    s.db.set(late, other('52:54:00:aa:00:02'));
    await caught;
    expect(s.asked).toEqual([late, late]);
    expect(f.leases.get(late)).toMatchObject({ mac: '52:54:00:aa:00:02' });
  });

  it('reads the address again when a refresh overlapping the page comes back after its row was learnt', async () => {
    const s = heldStore(1);
    const { docs, late, row, other } = lateRow();
    const f = await follower(s.store);
    const refreshed = f.leases.refresh(late, stranger)!;
    const caught = f.leases.catchUp()!;
    s.pages[0]!.resolve(s.page(docs));
    expect(await caught).toBe(3 * LEARN_SLICE);
    expect(f.leases.get(late)).toMatchObject({ mac: row.mac });
    // The refresh's row may be older than the page's: not learnt over it; the row as stored now is.
    s.db.set(late, row);
    s.gets[0]!.resolve(other('52:54:00:aa:00:01'));
    await refreshed;
    expect(s.asked).toEqual([late, late]);
    expect(f.leases.get(late)).toMatchObject({ mac: row.mac });
  });

  it('learns the row of a page sent after a refresh returned', async () => {
    const s = heldStore();
    const { docs, late, row, other } = lateRow();
    const f = await follower(s.store);
    s.db.set(late, other('52:54:00:aa:00:01'));
    await f.leases.refresh(late, stranger);
    const caught = f.leases.catchUp()!;
    s.pages[0]!.resolve(s.page(docs));
    expect(await caught).toBe(3 * LEARN_SLICE);
    expect(f.leases.get(late)).toMatchObject({ mac: row.mac });
    expect(s.asked).toEqual([late]);
  });
});

/** Versions of one row another daemon wrote: `v(mac, state)`, expiring in February (the page's rows: January). */
function versions() {
  const [row] = rows(1);
  const v = (mac: string, state: Lease['state'] = 'bound'): Lease => ({
    ...row!,
    mac,
    state,
    expiresAt: '2099-02-01T00:00:00.000Z',
  });
  return { x: row!.address, v };
}

// A client of this daemon's, whose offer it claims.
const mine = { mac: '52:54:00:cc:00:01' };

describe('reads of one address in no known order', () => {
  it('reads the address again when a refresh sent first comes back after one sent later taught the index', async () => {
    const s = heldStore(1);
    const { x, v } = versions();
    const f = await follower(s.store);
    const first = f.leases.refresh(x, stranger)!;
    s.db.set(x, v('52:54:00:aa:00:02'));
    await f.leases.refresh(x, stranger);
    expect(f.leases.get(x)).toMatchObject({ mac: '52:54:00:aa:00:02' });
    // The first's snapshot may be the older: its row is not learnt over the second's; the row as stored now is.
    s.db.set(x, v('52:54:00:aa:00:03'));
    s.gets[0]!.resolve(v('52:54:00:aa:00:01'));
    await first;
    expect(s.asked).toEqual([x, x, x]);
    expect(f.leases.get(x)).toMatchObject({ mac: '52:54:00:aa:00:03' });
  });

  it("reads the address again when a refresh overlapping a lost claim comes back after the holder's row", async () => {
    const s = heldStore(1, true);
    const { x, v } = versions();
    const f = await follower(s.store);
    const claimed = f.leases.claimOffer(f.leases.offer(big, mine, x, 60))!;
    const refreshed = f.leases.refresh(x, stranger)!;
    s.claims[0]!.resolve({ ok: false, holder: v('52:54:00:aa:00:02') });
    expect(await claimed).toBe(false);
    expect(f.leases.get(x)).toMatchObject({ mac: '52:54:00:aa:00:02' });
    s.db.set(x, v('52:54:00:aa:00:02'));
    s.gets[0]!.resolve(v('52:54:00:aa:00:01', 'released'));
    await refreshed;
    expect(s.asked).toEqual([x, x]);
    expect(f.leases.get(x)).toMatchObject({ mac: '52:54:00:aa:00:02', state: 'bound' });
  });

  it("has a refresh back while a claim of its address is out wait for the claim's outcome, then read again", async () => {
    const s = heldStore(1, true);
    const { x, v } = versions();
    const f = await follower(s.store);
    const claimed = f.leases.claimOffer(f.leases.offer(big, mine, x, 60))!;
    let done = false;
    const refreshed = f.leases.refresh(x, stranger)!.then(() => (done = true));
    s.gets[0]!.resolve(v('52:54:00:aa:00:01'));
    await turn();
    expect(done).toBe(false);
    expect(f.leases.get(x)).toMatchObject({ mac: mine.mac, state: 'offered' });
    s.db.set(x, v('52:54:00:aa:00:03'));
    s.claims[0]!.resolve({ ok: false, holder: v('52:54:00:aa:00:02') });
    expect(await claimed).toBe(false);
    await refreshed;
    expect(s.asked).toEqual([x, x]);
    expect(f.leases.get(x)).toMatchObject({ mac: '52:54:00:aa:00:03' });
  });

  it("keeps a won claim's lease over the row of a refresh that overlapped the claim", async () => {
    const s = heldStore(1, true);
    const { x, v } = versions();
    const f = await follower(s.store);
    const rec = f.leases.offer(big, mine, x, 60);
    const claimed = f.leases.claimOffer(rec)!;
    const refreshed = f.leases.refresh(x, stranger)!;
    // Read before the claim's COMMIT: the row it replaced.
    s.gets[0]!.resolve(v('52:54:00:aa:00:01', 'expired'));
    await turn();
    const { ip: _ip, exp: _exp, ...row } = rec;
    s.db.set(x, row);
    s.claims[0]!.resolve({ ok: true });
    expect(await claimed).toBe(true);
    await refreshed;
    expect(s.asked).toEqual([x, x]);
    expect(f.leases.get(x)).toMatchObject({ mac: mine.mac, state: 'offered' });
  });

  it("reads again a page's row that overlapped a lost claim whose holder is the client's lease at that address", async () => {
    const s = heldStore(0, true);
    const [a, b] = rows(2);
    const bound: Lease = { ...b!, mac: mine.mac };
    const f = await follower(s.store);
    const claimed = f.leases.claimOffer(f.leases.offer(big, mine, a!.address, 60))!;
    const caught = f.leases.catchUp()!;
    s.claims[0]!.resolve({ ok: false, holder: bound });
    expect(await claimed).toBe(false);
    expect(f.leases.get(b!.address)).toMatchObject({ mac: mine.mac, state: 'bound' });
    // The page's older row of the client's lease, its offer: not learnt over the holder's; the row stored now is.
    s.db.set(b!.address, bound);
    s.pages[0]!.resolve(s.page([{ ...bound, state: 'offered', expiresAt: '2098-01-01T00:00:00.000Z' }]));
    expect(await caught).toBe(0);
    expect(s.asked).toEqual([b!.address]);
    expect(f.leases.get(b!.address)).toMatchObject({ mac: mine.mac, state: 'bound' });
  });

  it('reads the address again when a refresh out as the index drops it (leases.deleted) comes back with its row', async () => {
    const s = heldStore(1);
    const { x, v } = versions();
    const f = await follower(s.store);
    const refreshed = f.leases.refresh(x, stranger)!;
    f.leases.drop(x);
    // Read before the delete: not brought back; the address as stored now has no row.
    s.gets[0]!.resolve(v('52:54:00:aa:00:01'));
    await refreshed;
    expect(s.asked).toEqual([x, x]);
    expect(f.leases.get(x)).toBeUndefined();
  });
});
