/**
 * GET /api/v1/backup through a running daemon: an admin gets a SQLite file holding what the daemon confirmed;
 * any other role is refused (the file holds token hashes and secure params).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

let d: TestDaemon;
const dir = mkdtempSync(path.join(tmpdir(), 'plinth-backup-api-'));
beforeAll(async () => {
  d = await startTestDaemon();
});
afterAll(async () => {
  await d.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('GET /api/v1/backup', () => {
  it('gives an admin a consistent SQLite copy with the confirmed writes', async () => {
    expect((await d.api('POST', '/api/v1/machines', { name: 'kept', macs: ['52:54:00:bb:00:01'] })).status).toBe(201);
    const r = await fetch(`${d.url}/api/v1/backup`, { headers: { authorization: `Bearer ${d.token}` } });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/vnd.sqlite3');
    const bytes = Buffer.from(await r.arrayBuffer());
    expect(bytes.subarray(0, 16).toString('latin1')).toBe('SQLite format 3\0');
    const file = path.join(dir, 'copy.db');
    writeFileSync(file, bytes);
    const db = new Database(file, { readonly: true });
    try {
      expect((db.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check).toBe('ok');
      const names = (db.prepare('SELECT doc FROM machines').all() as { doc: string }[]).map(
        (row) => (JSON.parse(row.doc) as { name: string }).name,
      );
      expect(names).toContain('kept');
    } finally {
      db.close();
    }
  });

  it('is refused to a viewer and without a token', async () => {
    const viewer = await d.api('POST', '/api/v1/tokens', { name: 'backup-viewer', role: 'viewer' });
    expect(viewer.status).toBe(201);
    const asViewer = await fetch(`${d.url}/api/v1/backup`, {
      headers: { authorization: `Bearer ${viewer.body.token}` },
    });
    expect(asViewer.status).toBe(403);
    expect((await fetch(`${d.url}/api/v1/backup`)).status).toBe(401);
  });
});
