/**
 * `Store.leaseChanges` on PostgreSQL when the cluster's transaction ids are behind the cursor (the database
 * restored into another cluster, whose xid counter starts lower): without a check, every row written after the
 * restore has a transaction id below the cursor's and reads as already seen, and a daemon's index stops following
 * the others until it restarts. With it, such a cursor reads every row and moves to this cluster's snapshot.
 * PostgreSQL only.
 */
import { describe, expect, it } from 'vitest';
import { backends, skipUnavailable } from './backends.js';
import { lease } from './lease-fixture.js';

const pg = backends(import.meta.filename).find((b) => b.name === 'postgres')!;

describe('lease changes after a restore into another cluster', () => {
  skipUnavailable(pg);

  it('reads every row when the cursor is ahead of this cluster, and follows from there', async () => {
    const store = await (await pg.db()).open();
    const read = store.leaseChanges!.bind(store);
    const start = await read();
    await store.putBatched('leases', '10.0.0.1', lease('10.0.0.1', '52:54:00:00:00:01'));
    await store.putBatched('leases', '10.0.0.2', lease('10.0.0.2', '52:54:00:00:00:02'));
    const next = await read(start.cursor);
    expect(next.docs.map((d) => d.address).sort()).toEqual(['10.0.0.1', '10.0.0.2']);
    // A cursor taken on a cluster whose ids were far ahead (xmin:xmax:xip).
    const ahead = '900000000000:900000000000:';
    const all = await read(ahead);
    expect(all.docs.map((d) => d.address).sort()).toEqual(['10.0.0.1', '10.0.0.2']);
    expect(all.cursor).not.toBe(ahead);
    // From the cursor it moved to, only what is written next.
    await store.putBatched('leases', '10.0.0.3', lease('10.0.0.3', '52:54:00:00:00:03'));
    expect((await read(all.cursor)).docs.map((d) => d.address)).toEqual(['10.0.0.3']);
    // A cursor of this cluster reads nothing twice.
    expect((await read(next.cursor)).docs.map((d) => d.address)).toEqual(['10.0.0.3']);
  });
});

describe('lease changes after a restore, in pages', () => {
  skipUnavailable(pg);

  it('pages every row by key when the cursor is ahead, and follows from the first page on', async () => {
    const store = await (await pg.db()).open({ leasePageSize: 3 });
    const read = store.leaseChanges!.bind(store);
    const start = await read();
    const addrs = [1, 2, 3, 4, 5, 6, 7].map((i) => `10.0.0.${i}`);
    for (const [i, a] of addrs.entries()) await store.putBatched('leases', a, lease(a, `52:54:00:00:00:0${i}`));
    const pages: string[][] = [];
    let cursor = '900000000000:900000000000:';
    for (let more = true; more; ) {
      const got = await read(cursor);
      pages.push(got.docs.map((d) => d.address as string));
      cursor = got.cursor;
      more = got.more;
      // Written during the pass: read by a later page of it (as it is now) or by the next pass.
      if (pages.length === 1) await store.putBatched('leases', '10.0.0.0', lease('10.0.0.0', '52:54:00:00:00:10'));
    }
    // By key, each once: the row written after the first page sorts before it, so the next pass brings it.
    expect(pages).toEqual([addrs.slice(0, 3), addrs.slice(3, 6), addrs.slice(6)]);
    expect((await read(cursor)).docs.map((d) => d.address)).toEqual(['10.0.0.0']);
    // A cursor of this cluster is unaffected.
    expect((await read(start.cursor)).docs).toHaveLength(3);
  });

  it('reads every row when the cluster falls behind a pass in progress', async () => {
    const store = await (await pg.db()).open({ leasePageSize: 3 });
    const read = store.leaseChanges!.bind(store);
    const start = await read();
    const addrs = [1, 2, 3, 4, 5].map((i) => `10.0.0.${i}`);
    for (const [i, a] of addrs.entries()) await store.putBatched('leases', a, lease(a, `52:54:00:00:00:0${i}`));
    const first = await read(start.cursor);
    expect(first.more).toBe(true);
    // The cursor is opaque; a pass whose target snapshot was taken on a cluster far ahead stands for the database
    // replaced between two of its pages.
    const inPass = { ...JSON.parse(first.cursor), to: '900000000000:900000000000:' };
    const all = await read(JSON.stringify(inPass));
    expect(all.docs.map((d) => d.address)).toEqual(addrs.slice(0, 3));
    const rest = await read(all.cursor);
    expect([rest.more, rest.docs.map((d) => d.address)]).toEqual([false, addrs.slice(3)]);
    expect((await read(rest.cursor)).docs).toEqual([]);
  });
});
