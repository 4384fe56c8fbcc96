/**
 * The PostgreSQL store when the server stops answering without a reset (a network partition, a frozen server):
 * reads, writes, batched writes and lease claims fail with a BackendError (the API's 503) after the query
 * timeout instead of hanging, none of the refused writes is acknowledged, and a new path works again. The
 * partition is a paused TCP relay (test/store/backends.ts). PostgreSQL only.
 */
import { describe, expect, it } from 'vitest';
import { openPgStore } from '../../src/store/pg.js';
import { BackendError } from '../../src/store/store.js';
import { backends, PG_URL, relay, skipUnavailable } from './backends.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;

/** Settles `p` or reports 'hung' after `ms`. */
const settled = (p: Promise<unknown>, ms: number) =>
  Promise.race([
    p.then(
      () => 'resolved',
      (err) => err,
    ),
    new Promise((r) => setTimeout(() => r('hung'), ms)),
  ]);

describe('PostgreSQL partition', () => {
  skipUnavailable(pgBackend);

  it('answers BackendError instead of hanging when the server stops answering', async () => {
    const db = await pgBackend.db();
    const r = await relay();
    const url = new URL(PG_URL!);
    url.port = String(r.port);
    const store = await openPgStore(url.toString(), { schema: db.where, queryTimeoutMs: 800, connectTimeoutMs: 800 });
    try {
      await store.create('machines', 'u1', { name: 'a' }, [{ field: 'name', value: 'a' }]);
      r.pause();
      const now = new Date().toISOString();
      const lease = { address: '10.0.0.9', subnet: 's', mac: 'aa', state: 'bound', expiresAt: '2099-01-01T00:00:00Z' };
      const outcomes = await Promise.all([
        settled(store.get('machines', 'u1'), 10_000),
        settled(store.list('machines'), 10_000),
        settled(store.create('machines', 'u2', { name: 'b' }, [{ field: 'name', value: 'b' }]), 10_000),
        settled(store.putBatched('leases', '10.0.0.2', { v: 2 }), 10_000),
        settled(store.claimLease!({ doc: lease, now }), 10_000),
      ]);
      for (const o of outcomes) expect(o).toBeInstanceOf(BackendError);
    } finally {
      await r.cut();
      await settled(store.close(), 5000);
    }
    // Nothing refused was written; the same schema answers on a working path.
    const fresh = await db.open();
    expect((await fresh.list('machines')).items.map((i) => i.key)).toEqual(['u1']);
    expect(await fresh.get('leases', '10.0.0.2')).toBeUndefined();
  }, 30_000);
});
