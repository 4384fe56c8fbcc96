import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { openSqliteStore } from '../../src/store/sqlite.js';

describe('schema migrations', () => {
  it('v1 -> latest keeps every lease readable and filterable, and drops the lease indexes', async () => {
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
    expect(idx.map((r) => (r as { name: string }).name).filter((n) => !n.startsWith('sqlite_autoindex'))).toEqual([]);
  });

  it('a fresh database gets every migration', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'plinth-mig-')), 'plinth.db');
    const store = openSqliteStore(file);
    expect(store.schemaVersion).toBe(MIGRATIONS.at(-1)!.version);
    await store.close();
  });
});
