/**
 * Back up while serving, restore offline: GET /api/v1/backup (src/http/backup.ts) snapshots a database that is
 * being written to, `plinth backup` (src/cli/backup.ts) saves it whole, the snapshot is an intact database with
 * every committed document; `plinth restore` refuses while a connection (the daemon) holds the database, and with
 * the daemon stopped replaces it, keeping the old one; bad files and newer schemas are refused.
 */
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBackup, RestoreError, restoreDatabase, runRestore } from '../../src/backup.js';
import { backupCommand } from '../../src/cli/backup.js';
import type { Client } from '../../src/cli/client.js';
import type { CliContext } from '../../src/cli/context.js';
import { registerBackupRoutes } from '../../src/http/backup.js';
import { silentLogger } from '../../src/log.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

let root: string;
let dataDir: string;
let app: FastifyInstance;
let base: string;
// The route reads only which backend the inventory is on.
const inventory = { backend: 'sqlite' as 'sqlite' | 'postgres' };

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'plinth-backup-t-'));
  dataDir = path.join(root, 'data');
  app = Fastify();
  await app.register(
    async (api) => registerBackupRoutes(api, { store: inventory as unknown as Store, dataDir, log: silentLogger }),
    { prefix: '/api/v1' },
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});
afterAll(async () => {
  await app.close();
  rmSync(root, { recursive: true, force: true });
});

function ctx(errs: string[]): CliContext {
  const client = {
    base,
    tokenFrom: 'test',
    url: (p: string) => `${base}/api/v1${p}`,
    authHeaders: () => ({}),
    fetch: (u: string, init?: RequestInit) => fetch(u, init),
    explain: async (err: unknown) => err as Error,
  } as unknown as Client;
  return {
    io: { out: () => {}, err: (s) => errs.push(s), outTTY: false, errTTY: false },
    mode: 'json',
    client,
    env: {},
    cwd: root,
    signal: new AbortController().signal,
  };
}

describe('backup while serving, restore offline', () => {
  it('is refused with 409 naming pg_dump when the inventory is on PostgreSQL', async () => {
    inventory.backend = 'postgres';
    try {
      const r = await fetch(`${base}/api/v1/backup`);
      expect(r.status).toBe(409);
      expect(await r.text()).toContain('pg_dump');
    } finally {
      inventory.backend = 'sqlite';
    }
  });

  it('snapshots a database being written, and restore replaces it only with the daemon stopped', async () => {
    const store = openSqliteStore(path.join(dataDir, 'plinth.db'));
    for (let i = 0; i < 300; i++) await store.create('machines', `m-${i}`, { name: `m-${i}` });
    // Writes keep landing while the backup runs (bounded in count).
    let stop = false;
    const writer = (async () => {
      for (let i = 0; i < 5000 && !stop; i++) await store.putBatched('leases', `10.1.${i >> 8}.${i & 255}`, { i });
    })();
    const file = path.join(root, 'snap.db');
    const errs: string[] = [];
    await backupCommand(ctx(errs), file);
    stop = true;
    await writer;
    expect(errs.join('')).toMatch(/written to .*snap\.db/);
    expect(statSync(file).mode & 0o077).toBe(0);
    expect(readdirSync(root).filter((f) => f.endsWith('.partial'))).toEqual([]);
    expect(checkBackup(file)).toEqual({ schemaVersion: MIGRATIONS.at(-1)!.version, machines: 300 });
    const snap = new Database(file, { readonly: true });
    expect(snap.pragma('integrity_check', { simple: true })).toBe('ok');
    snap.close();
    // No temp snapshot left behind by the route (removed once its stream closes).
    const leftovers = () =>
      readdirSync(tmpdir()).filter((f) => f.startsWith('plinth-backup-') && !f.startsWith('plinth-backup-t-'));
    await expect.poll(leftovers).toEqual([]);

    // The daemon's connection is open: refused, nothing changed.
    await expect(restoreDatabase(file, dataDir)).rejects.toThrow(/in use \(is the daemon running\?\)/);
    await store.create('machines', 'after', { name: 'after' });
    expect((await store.list('machines')).total).toBe(301);
    await store.close();

    const said = await restoreDatabase(file, dataDir);
    expect(said.join('\n')).toMatch(/kept the database it replaces as .*plinth\.db\.before-restore-/);
    expect(readdirSync(dataDir).some((f) => f.startsWith('plinth.db.before-restore-'))).toBe(true);
    const back = openSqliteStore(path.join(dataDir, 'plinth.db'));
    expect((await back.list('machines')).total).toBe(300);
    expect(await back.get('machines', 'after')).toBeUndefined();
    await back.close();
  });

  it('refuses files that are not an intact Plinth database of a known schema', async () => {
    const junk = path.join(root, 'junk.db');
    writeFileSync(junk, 'not a database at all, just some bytes '.repeat(200));
    await expect(restoreDatabase(junk, path.join(root, 'fresh'))).rejects.toThrow(RestoreError);
    const newer = path.join(root, 'newer.db');
    const db = new Database(newer);
    db.exec('CREATE TABLE machines (key TEXT PRIMARY KEY, doc TEXT, etag TEXT)');
    db.pragma('user_version = 99');
    db.close();
    await expect(restoreDatabase(newer, path.join(root, 'fresh'))).rejects.toThrow(/schema version 99.*newer/);
    const empty = path.join(root, 'empty.db');
    new Database(empty).close();
    await expect(restoreDatabase(empty, path.join(root, 'fresh'))).rejects.toThrow(/not a Plinth database/);
  });

  it('plinth restore: usage, a refusal exit code, and a restore into an empty data dir', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const w = (a: string[]) => ({ write: (s: string) => a.push(s) });
    expect(await runRestore([], {}, w(out), w(err))).toBe(2);
    expect(
      await runRestore([path.join(root, 'missing.db'), '--data-dir', path.join(root, 'x')], {}, w(out), w(err)),
    ).toBe(1);
    expect(err.join('')).toMatch(/cannot be opened/);
    const fresh = path.join(root, 'fresh2');
    expect(await runRestore([path.join(root, 'snap.db')], { PLINTH_DATA_DIR: fresh }, w(out), w(err))).toBe(0);
    const s = openSqliteStore(path.join(fresh, 'plinth.db'));
    expect((await s.list('machines')).total).toBe(300);
    await s.close();
  });
});
