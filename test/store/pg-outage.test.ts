/**
 * The PostgreSQL store when the database goes away and comes back (a restart, a dropped network): reads and
 * writes fail with a BackendError (the API's 503), none hangs, no batched write is acknowledged, and the same
 * store works again once the server is reachable. The server is reached through a TCP relay the test cuts
 * (the shared test cluster itself keeps running for the other files). PostgreSQL only.
 */
import { describe, expect, it } from 'vitest';
import { openPgStore } from '../../src/store/pg.js';
import { BackendError } from '../../src/store/store.js';
import { adminQuery, backends, PG_URL, relay, skipUnavailable } from './backends.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;

describe('PostgreSQL outage', () => {
  skipUnavailable(pgBackend);

  it('fails with BackendError while the server is unreachable, then works again with the same store', async () => {
    const { where: schema } = await pgBackend.db();
    const r1 = await relay();
    const url = new URL(PG_URL!);
    url.port = String(r1.port);
    const store = await openPgStore(url.toString(), { schema, connectTimeoutMs: 1000 });
    try {
      await store.create('machines', 'u1', { name: 'a' }, [{ field: 'name', value: 'a' }]);
      await store.putBatched('leases', '10.0.0.1', { v: 1 });

      await r1.cut();
      await expect(store.get('machines', 'u1')).rejects.toBeInstanceOf(BackendError);
      await expect(store.list('machines')).rejects.toBeInstanceOf(BackendError);
      await expect(store.create('machines', 'u2', { name: 'b' })).rejects.toBeInstanceOf(BackendError);
      await expect(store.putBatched('leases', '10.0.0.2', { v: 2 })).rejects.toBeInstanceOf(BackendError);
      expect(await store.ping()).toBe(false);
      // Nothing of the refused writes reached the database.
      const there = await adminQuery(`SELECT key FROM ${schema}.leases UNION ALL SELECT key FROM ${schema}.machines`);
      expect(there.rows.map((r) => r.key).sort()).toEqual(['10.0.0.1', 'u1']);

      const r2 = await relay(r1.port);
      try {
        expect(await store.ping()).toBe(true);
        expect((await store.get('machines', 'u1'))?.doc).toEqual({ name: 'a' });
        await store.putBatched('leases', '10.0.0.2', { v: 2 });
        expect((await store.get('leases', '10.0.0.2'))?.doc).toEqual({ v: 2 });
      } finally {
        await store.close();
        await r2.cut();
      }
    } finally {
      await store.close();
    }
  }, 30_000);
});
