import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../../src/store/sqlite.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const dbFile = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'plinth-modes-'));
  dirs.push(d);
  return path.join(d, 'plinth.db');
};
const mode = (f: string) => statSync(f).mode & 0o777;

// plinth.db holds secure params in clear.
describe('the database file is the owner only', () => {
  it('is created 0600, and so are its -wal and -shm, whatever the umask', async () => {
    const file = dbFile();
    const old = process.umask(0o022);
    try {
      const store = openSqliteStore(file);
      await store.create('params', 'p', { name: 'p', schema: {}, secure: true });
      await store.putBatched('leases', '10.0.0.1', { address: '10.0.0.1' });
      expect(existsSync(`${file}-wal`)).toBe(true);
      for (const f of [file, `${file}-wal`, `${file}-shm`]) expect(mode(f), f).toBe(0o600);
      await store.close();
    } finally {
      process.umask(old);
    }
  });

  it('tightens a world-readable database an older version left behind', async () => {
    const file = dbFile();
    const first = openSqliteStore(file);
    await first.create('params', 'p', { name: 'p', schema: {}, secure: true });
    await first.close();
    chmodSync(file, 0o644);
    writeFileSync(`${file}-shm`, '');
    chmodSync(`${file}-shm`, 0o644);
    const store = openSqliteStore(file);
    expect(mode(file)).toBe(0o600);
    expect(mode(`${file}-shm`)).toBe(0o600);
    expect((await store.get('params', 'p'))?.doc.secure).toBe(true);
    await store.close();
  });
});
