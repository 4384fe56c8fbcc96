import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { listQuery } from '../../src/store/sqlite-docs.js';

describe('schema migrations', () => {
  it('v1 -> latest keeps every lease readable and filterable; leases keep only the mac and state indexes', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'plinth-mig-')), 'plinth.db');
    const raw = new Database(file);
    raw.exec(MIGRATIONS[0]!.sql);
    raw.pragma('user_version = 1');
    const doc = {
      address: '10.0.0.5',
      mac: '52:54:00:00:00:05',
      subnet: 'lab',
      state: 'bound',
      expiresAt: '2030-01-01T00:00:00Z',
    };
    raw.prepare('INSERT INTO leases (key, doc, etag) VALUES (?, ?, ?)').run('10.0.0.5', JSON.stringify(doc), 'e');
    raw.close();

    const store = openSqliteStore(file);
    expect(store.schemaVersion).toBe(MIGRATIONS.at(-1)!.version);
    expect((await store.get('leases', '10.0.0.5'))?.doc).toEqual(doc);
    const byMac = await store.list('leases', { filters: [{ field: 'mac', value: '52:54:00:00:00:05' }] });
    expect(byMac.items.map((i) => i.key)).toEqual(['10.0.0.5']);
    await store.close();

    const check = new Database(file, { readonly: true });
    const idx = check.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'leases'").all();
    check.close();
    const names = idx.map((r) => (r as { name: string }).name).filter((n) => !n.startsWith('sqlite_autoindex'));
    expect(names.sort()).toEqual(['leases_mac', 'leases_state']);
  });

  it("the API's ?mac= and ?state= lease filters walk an index; other fields still scan", async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'plinth-mig-')), 'plinth.db');
    const store = openSqliteStore(file);
    await store.putBatched('leases', '10.0.0.1', { address: '10.0.0.1', mac: 'aa', state: 'bound', subnet: 's' });
    await store.putBatched('leases', '10.0.0.2', { address: '10.0.0.2', mac: 'bb', state: 'expired', subnet: 's' });
    expect((await store.list('leases', { filters: [{ field: 'mac', value: 'bb' }] })).items.map((i) => i.key)).toEqual([
      '10.0.0.2',
    ]);
    expect(
      (await store.list('leases', { filters: [{ field: 'state', value: 'bound' }], limit: 10 })).items.map(
        (i) => i.key,
      ),
    ).toEqual(['10.0.0.1']);
    await store.close();
    const db = new Database(file, { readonly: true });
    const plan = (field: string) => {
      const { sql, args } = listQuery('leases', { filters: [{ field, value: 'x' }] });
      const rows = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[];
      return rows.map((r) => r.detail).join('; ');
    };
    expect(plan('mac')).toMatch(/USING INDEX leases_mac/);
    expect(plan('state')).toMatch(/USING INDEX leases_state/);
    expect(plan('subnet')).not.toMatch(/USING INDEX leases_/);
    db.close();
  });

  it('a fresh database gets every migration', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'plinth-mig-')), 'plinth.db');
    const store = openSqliteStore(file);
    expect(store.schemaVersion).toBe(MIGRATIONS.at(-1)!.version);
    await store.close();
  });
});
