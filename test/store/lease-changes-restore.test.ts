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
