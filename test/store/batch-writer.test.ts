import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { statementCache } from '../../src/store/batch.mjs';
import { migrate } from '../../src/store/migrations.js';
import { batchWriter } from '../../src/store/sqlite-batch.js';
import { BackendError } from '../../src/store/store.js';

const dbs: Database.Database[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
});

function mainDb() {
  const db = new Database(':memory:');
  migrate(db);
  dbs.push(db);
  return db;
}

const lease = (key: string, n: number) => () => ({ kind: 'leases', key, json: JSON.stringify({ n }) });

describe('putBatched group commit (sqlite-batch.ts)', () => {
  it('replays on the main thread what a writer thread that died had not confirmed, in order', async () => {
    const db = mainDb();
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      // The thread cannot open this file: it dies with the first batch in flight.
      const w = batchWriter(db, statementCache(db), '/nonexistent-plinth-dir/x.db', { writer: 'thread' });
      await Promise.all([w.put(lease('10.0.0.1', 1)), w.put(lease('10.0.0.2', 1)), w.put(lease('10.0.0.1', 2))]);
      const rows = db.prepare('SELECT key, doc FROM leases ORDER BY key').all();
      expect(rows).toEqual([
        { key: '10.0.0.1', doc: '{"n":2}' },
        { key: '10.0.0.2', doc: '{"n":1}' },
      ]);
      // Later writes go inline at once.
      await w.put(lease('10.0.0.3', 1));
      expect(db.prepare('SELECT count(*) AS n FROM leases').get()).toEqual({ n: 3 });
      await w.close();
      await new Promise((r) => setImmediate(r));
      expect(warnings.some((m) => m.includes('the writer thread stopped'))).toBe(true);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('a write that cannot be built fails alone; a closed writer refuses writes', async () => {
    const db = mainDb();
    const w = batchWriter(db, statementCache(db), ':memory:');
    const bad = w.put(() => {
      throw new Error('not serialisable');
    });
    const good = w.put(lease('10.0.0.9', 1));
    await expect(bad).rejects.toBeInstanceOf(BackendError);
    await expect(good).resolves.toBeUndefined();
    await w.close();
    await expect(w.put(lease('10.0.0.10', 1))).rejects.toThrow('store is closed');
    expect(db.prepare('SELECT key FROM leases').all()).toEqual([{ key: '10.0.0.9' }]);
  });

  it('a failing transaction rejects every write of its batch with a BackendError', async () => {
    const db = mainDb();
    const w = batchWriter(db, statementCache(db), ':memory:', { writer: 'inline' });
    const a = w.put(lease('10.0.0.1', 1));
    const b = w.put(() => ({ kind: 'no_such_table', key: 'k', json: '{}' }));
    await expect(a).rejects.toBeInstanceOf(BackendError);
    await expect(b).rejects.toThrow(/storage failed/);
    expect(db.prepare('SELECT count(*) AS n FROM leases').get()).toEqual({ n: 0 });
    await w.close();
  });
});
