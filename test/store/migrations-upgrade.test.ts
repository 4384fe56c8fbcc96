/**
 * Upgrades from every earlier schema version with data in it: a database built by the migrations up to version N
 * (1 .. latest-1), filled as that version's Plinth would, opened with the current code: every document readable,
 * filters and unique values working, writes accepted, and the schema at the latest version. A new migration is
 * covered by the loop as soon as it is appended.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { openSqliteStore } from '../../src/store/sqlite.js';

const root = mkdtempSync(path.join(tmpdir(), 'plinth-upgrade-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const latest = MIGRATIONS.at(-1)!.version;

const machine = { name: 'web-1', macs: ['52:54:00:aa:00:01'], bootEnv: 'local', address: '10.0.0.21', arch: 'x86_64' };
const lease = {
  address: '10.0.0.21',
  mac: '52:54:00:aa:00:01',
  subnet: 'lab',
  state: 'bound',
  expiresAt: '2031-01-01T00:00:00Z',
};
const subnet = { name: 'lab', subnet: '10.0.0.0/24', activeStart: '10.0.0.100', activeEnd: '10.0.0.199' };

/** A database as Plinth at schema `version` left it, with a machine (and its unique values), a lease, a subnet. */
function oldDatabase(version: number): string {
  const file = path.join(mkdtempSync(path.join(root, `v${version}-`)), 'plinth.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  for (const m of MIGRATIONS.filter((x) => x.version <= version)) db.exec(m.sql);
  db.pragma(`user_version = ${version}`);
  const ins = (kind: string, key: string, doc: unknown) =>
    db.prepare(`INSERT INTO ${kind} (key, doc, etag) VALUES (?, ?, ?)`).run(key, JSON.stringify(doc), `e-${key}`);
  ins('machines', 'uuid-1', machine);
  db.prepare('INSERT INTO uniq (kind, field, value, key) VALUES (?, ?, ?, ?)').run(
    'machines',
    'name',
    'web-1',
    'uuid-1',
  );
  db.prepare('INSERT INTO uniq (kind, field, value, key) VALUES (?, ?, ?, ?)').run(
    'machines',
    'macs',
    '52:54:00:aa:00:01',
    'uuid-1',
  );
  ins('leases', '10.0.0.21', lease);
  ins('subnets', 'lab', subnet);
  db.close();
  return file;
}

describe('upgrade from every earlier schema version', () => {
  it('there is at least one earlier version to upgrade from', () => {
    expect(latest).toBeGreaterThan(1);
  });

  for (const m of MIGRATIONS.slice(0, -1)) {
    it(`v${m.version} with data -> v${latest}`, async () => {
      const file = oldDatabase(m.version);
      const store = openSqliteStore(file);
      try {
        expect(store.schemaVersion).toBe(latest);
        expect((await store.get('machines', 'uuid-1'))?.doc).toEqual(machine);
        expect((await store.get('leases', '10.0.0.21'))?.doc).toEqual(lease);
        expect((await store.get('subnets', 'lab'))?.doc).toEqual(subnet);
        expect(await store.keyOf('machines', 'name', 'web-1')).toBe('uuid-1');
        expect(await store.keyOf('machines', 'macs', '52:54:00:aa:00:01')).toBe('uuid-1');
        const byBootEnv = await store.list('machines', { filters: [{ field: 'bootEnv', value: 'local' }] });
        expect(byBootEnv.items.map((i) => i.key)).toEqual(['uuid-1']);
        const byMac = await store.list('leases', { filters: [{ field: 'mac', value: lease.mac }] });
        expect(byMac.total).toBe(1);
        // Unique values carried over: a second machine with the same name is refused, another is accepted.
        await expect(
          store.create('machines', 'uuid-2', { name: 'web-1' }, [{ field: 'name', value: 'web-1' }]),
        ).rejects.toThrow();
        await store.create('machines', 'uuid-3', { name: 'web-2' }, [{ field: 'name', value: 'web-2' }]);
        await store.putBatched('leases', '10.0.0.22', { ...lease, address: '10.0.0.22' });
        expect((await store.list('leases')).total).toBe(2);
      } finally {
        await store.close();
      }
      // Reopening the upgraded file applies nothing more and keeps everything.
      const again = openSqliteStore(file);
      expect(again.schemaVersion).toBe(latest);
      expect((await again.list('machines')).total).toBe(2);
      await again.close();
    });
  }
});
