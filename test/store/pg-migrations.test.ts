/**
 * The PostgreSQL store's migrations: applied once whatever the number of daemons opening the schema at the same
 * moment (advisory lock), not again on reopen, and a schema from a newer Plinth is refused. PostgreSQL only
 * (SQLite's are migrations.test.ts); skipped with a line saying so without PLINTH_TEST_PG_URL.
 */
import { describe, expect, it } from 'vitest';
import { etagOf } from '../../src/store/batch.mjs';
import { PG_SWEEP_READ } from '../../src/store/lease-expiry.js';
import { openPgStore } from '../../src/store/pg.js';
import { PG_MIGRATIONS, PG_SCHEMA_VERSION } from '../../src/store/pg-migrations.js';
import { BackendError, StoreError } from '../../src/store/store.js';
import { adminQuery, backends, skipUnavailable } from './backends.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;

describe('PostgreSQL migrations', () => {
  skipUnavailable(pgBackend);

  it('five daemons opening an empty schema at once: each version applied exactly once, all open', async () => {
    const db = await pgBackend.db();
    const stores = await Promise.all(Array.from({ length: 5 }, () => db.open()));
    for (const s of stores) expect((s as { schemaVersion?: number }).schemaVersion).toBe(PG_SCHEMA_VERSION);
    const applied = await adminQuery(`SELECT version FROM ${db.where}.plinth_migrations ORDER BY version`);
    expect(applied.rows.map((r) => r.version)).toEqual(PG_MIGRATIONS.map((m) => m.version));
    await stores[0]!.create('machines', 'u1', { name: 'a' });
    expect((await stores[4]!.get('machines', 'u1'))?.doc).toEqual({ name: 'a' });
  });

  it("v3 upgrades a schema where a client holds two live leases: the older one becomes expired, its etag its JSON's", async () => {
    const db = await pgBackend.db();
    // The schema as Plinth left it at v2, with a client whose ended lease was still 'bound' when it got a new one.
    const v2 = PG_MIGRATIONS.filter((m) => m.version <= 2);
    await adminQuery(`SET search_path = ${db.where}; ${v2.map((m) => m.sql).join('\n')}
      CREATE TABLE plinth_migrations (version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
      INSERT INTO plinth_migrations (version, description) VALUES (1, 'v1'), (2, 'v2');`);
    const put = async (address: string, doc: object) => {
      const body = JSON.stringify({ address, ...doc });
      await adminQuery(`INSERT INTO ${db.where}.leases (key, doc, body, etag) VALUES ($1, $2::jsonb, $2, $3)`, [
        address,
        body,
        etagOf(body),
      ]);
    };
    const c = { subnet: 'lab', mac: '52:54:00:00:00:01' };
    await put('10.0.0.1', { ...c, state: 'bound', expiresAt: '2026-01-01T00:00:00.000Z' });
    await put('10.0.0.2', { ...c, state: 'bound', expiresAt: '2026-01-02T00:00:00.000Z' });
    await put('10.0.0.3', {
      subnet: 'lab',
      mac: '52:54:00:00:00:02',
      state: 'bound',
      expiresAt: '2026-01-01T00:00:00.000Z',
    });
    const s = await db.open();
    expect((s as { schemaVersion?: number }).schemaVersion).toBe(PG_SCHEMA_VERSION);
    const old = await s.get('leases', '10.0.0.1');
    expect(old?.doc).toMatchObject({ state: 'expired', mac: c.mac });
    expect(old?.etag).toBe(etagOf(old!.json));
    expect((await s.get('leases', '10.0.0.2'))?.doc.state).toBe('bound');
    expect((await s.get('leases', '10.0.0.3'))?.doc.state).toBe('bound');
  });

  it('reopening applies nothing again and keeps the data', async () => {
    const db = await pgBackend.db();
    const first = await db.open();
    await first.putBatched('leases', '10.0.0.1', { mac: 'aa' });
    await first.close();
    const before = await adminQuery(`SELECT version, applied_at FROM ${db.where}.plinth_migrations`);
    const again = await db.open();
    const after = await adminQuery(`SELECT version, applied_at FROM ${db.where}.plinth_migrations`);
    expect(after.rows).toEqual(before.rows);
    expect((await again.list('leases', { filters: [{ field: 'mac', value: 'aa' }] })).total).toBe(1);
  });

  it('a schema from a newer Plinth is refused with a StoreError; an unreachable server with a BackendError', async () => {
    const db = await pgBackend.db();
    await (await db.open()).close();
    await adminQuery(`INSERT INTO ${db.where}.plinth_migrations (version, description) VALUES (999, 'future')`);
    const newer = db.open();
    await expect(newer).rejects.toBeInstanceOf(StoreError);
    await expect(newer).rejects.toThrow(/version 999 but this Plinth knows up to/);
    const nowhere = openPgStore('postgres://nobody:secret@127.0.0.1:1/x', { connectTimeoutMs: 2000 });
    await expect(nowhere).rejects.toBeInstanceOf(BackendError);
    await expect(nowhere).rejects.not.toThrow(/secret/);
  });

  it("v6: the leader's sweep reads only the ended leases, by index, not every live one", async () => {
    const db = await pgBackend.db();
    const s = await db.open();
    await s.close();
    // 20,000 live leases: one in 100 ended long before the sweep's time (its 200), the rest end long after it.
    await adminQuery(`SET search_path = ${db.where};
      INSERT INTO leases (key, doc, body, etag)
      SELECT k, b::jsonb, b, md5(b) FROM (
        SELECT '10.1.' || (i / 256) || '.' || (i % 256) AS k, json_build_object('address', '10.1.' || (i / 256) || '.' || (i % 256),
          'mac', '52:54:00:' || lpad(to_hex(i), 6, '0'), 'subnet', 'lab', 'state', 'bound',
          'expiresAt', CASE WHEN i % 100 = 0 THEN '2026-01-01T00:00:00.000Z' ELSE '2999-01-01T00:00:00.000Z' END)::text AS b
        FROM generate_series(1, 20000) i) x;
      ANALYZE leases;`);
    const plan = await adminQuery(
      `BEGIN; SET LOCAL search_path = ${db.where}; PREPARE sweep AS ${PG_SWEEP_READ};
       EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE sweep('2026-06-01T00:00:00.000Z', 1000); ROLLBACK;`,
    );
    const json = JSON.stringify((plan as unknown as { rows: unknown[] }[])[3]!.rows);
    expect(json).toContain('"Index Name":"leases_live_expiry"');
    expect(json).not.toContain('Seq Scan');
    // Every row the scan read was one it returned: no live lease read and filtered out.
    expect(json).not.toMatch(/"Rows Removed by Filter":[1-9]/);
    expect(json).toMatch(/"Actual Rows":200\b/);
  });
});
