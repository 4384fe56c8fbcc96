import { spawnSync } from 'node:child_process';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { type BatchItem, groupCommitter } from '../../src/store/batch.mjs';
import { etagOf, openSqliteStore } from '../../src/store/sqlite.js';

const dbFile = () => path.join(mkdtempSync(path.join(tmpdir(), 'plinth-writer-')), 'plinth.db');
/** What another process sees in the file: only what is committed. */
const onDisk = (file: string, key: string) => {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT doc, etag FROM leases WHERE key = ?').get(key) as
      | { doc: string; etag: string }
      | undefined;
  } finally {
    db.close();
  }
};

describe('putBatched on a file store (writer thread)', () => {
  // Without the journal (no addon, or journal 'off') a write resolves once committed to SQLite; with it, once its
  // record is on disk (journal.test.ts), and SQLite has it after the apply (the read below drains it).
  it('resolves only once the write is committed, with the etag the main connection would compute', async () => {
    const file = dbFile();
    const store = openSqliteStore(file, { journal: 'off' });
    const writes = Array.from({ length: 200 }, (_, i) =>
      store
        .putBatched('leases', `10.0.${i >> 8}.${i & 255}`, { address: `10.0.${i >> 8}.${i & 255}`, n: i })
        .then(() => onDisk(file, `10.0.${i >> 8}.${i & 255}`)),
    );
    const seen = await Promise.all(writes);
    for (const [i, row] of seen.entries()) {
      expect(row, `write ${i}`).toBeDefined();
      expect(JSON.parse(row!.doc)).toEqual({ address: `10.0.${i >> 8}.${i & 255}`, n: i });
      expect(row!.etag).toBe(etagOf(row!.doc));
    }
    // The main connection reads what the writer committed; null deletes.
    expect((await store.get('leases', '10.0.0.7'))?.doc).toEqual({ address: '10.0.0.7', n: 7 });
    await store.putBatched('leases', '10.0.0.7', null);
    expect(await store.get('leases', '10.0.0.7')).toBeUndefined();
    await store.close();
  });

  it('with the journal: applied by the writer thread with the etag the main connection would compute', async () => {
    const file = dbFile();
    const store = openSqliteStore(file);
    await Promise.all(Array.from({ length: 200 }, (_, i) => store.putBatched('leases', `10.0.0.${i}`, { n: i })));
    expect((await store.list('leases')).total).toBe(200);
    for (const i of [0, 77, 199]) {
      const row = onDisk(file, `10.0.0.${i}`);
      expect(JSON.parse(row!.doc)).toEqual({ n: i });
      expect(row!.etag).toBe(etagOf(row!.doc));
    }
    await store.close();
  });

  it('close() waits for the writes in flight; all of them are there after reopening', async () => {
    const file = dbFile();
    const store = openSqliteStore(file);
    const pending = Array.from({ length: 500 }, (_, i) => store.putBatched('leases', `k${i}`, { i }));
    await store.close();
    await Promise.all(pending);
    await expect(store.putBatched('leases', 'late', {})).rejects.toThrow(/closed/);
    const again = openSqliteStore(file);
    expect((await again.list('leases')).total).toBe(500);
    await again.close();
  });

  it('an unknown kind is refused, not sent to the writer', async () => {
    const store = openSqliteStore(dbFile());
    await expect(store.putBatched('nope' as any, 'k', {})).rejects.toThrow(/unknown kind/);
    await store.close();
  });

  it('inline and thread writers, with and without the journal, store the same rows', async () => {
    for (const [writer, journal] of [
      ['inline', 'off'],
      ['thread', 'off'],
      ['thread', 'auto'],
    ] as const) {
      const store = openSqliteStore(dbFile(), { writer, journal });
      await Promise.all([store.putBatched('leases', 'a', { x: 1 }), store.putBatched('leases', 'b', { x: 2 })]);
      await store.putBatched('leases', 'a', { x: 3 });
      expect((await store.list('leases')).items.map((i) => [i.key, i.doc])).toEqual([
        ['a', { x: 3 }],
        ['b', { x: 2 }],
      ]);
      await store.close();
    }
  });

  it('API writes (read, then write) never fail while the writer thread commits', async () => {
    const store = openSqliteStore(dbFile());
    await store.create('subnets', 's', { n: 0 });
    let stop = false;
    let committed = 0;
    const storm = (async () => {
      for (let i = 0; !stop && i < 100_000; i++) {
        await store.putBatched('leases', `10.1.${(i >> 8) & 255}.${i & 255}`, { i });
        committed++;
      }
    })();
    try {
      for (let n = 1; n <= 300; n++) {
        await store.replace('subnets', 's', { n });
        await store.create('machines', `m${n}`, { n }, [{ field: 'name', value: `m${n}` }]);
        await store.remove('machines', `m${n}`);
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      stop = true;
      await storm;
    }
    expect(committed).toBeGreaterThan(0);
    expect((await store.get('subnets', 's'))?.doc).toEqual({ n: 300 });
    await store.close();
  }, 60_000);

  // The writer's connection has SQLite's automatic checkpoint off (it ran inside a COMMIT) and checkpoints
  // between transactions instead: the WAL must still be copied into the database and start over, not grow.
  it('checkpoints keep the WAL bounded under a stream of batches', async () => {
    const file = dbFile();
    const store = openSqliteStore(file);
    const before = statSync(file).size;
    for (let round = 0; round < 80; round++)
      await Promise.all(
        Array.from({ length: 50 }, (_, j) => {
          const i = round * 50 + j;
          return store.putBatched('leases', `10.3.${i >> 8}.${i & 255}`, { i, pad: 'x'.repeat(200) });
        }),
      );
    // With the journal the writes may still wait for their apply: the list drains them.
    expect((await store.list('leases')).total).toBe(4000);
    // 4,000 leases are about 10,000 WAL frames (40 MB) without checkpoints.
    expect(statSync(`${file}-wal`).size).toBeLessThan(12 * 1024 * 1024);
    expect(statSync(file).size).toBeGreaterThan(before + 100 * 4096);
    await store.close();
  }, 60_000);

  it('an idle writer never keeps a process alive', () => {
    const file = dbFile();
    const child = fileURLToPath(new URL('./writer-child.ts', import.meta.url));
    const r = spawnSync(process.execPath, ['--import', 'tsx', child, file], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stdout).toContain('WRITTEN');
    expect(r.status).toBe(0);
    expect(r.stderr).not.toMatch(/writer thread stopped/);
    expect(onDisk(file, '10.0.0.49')).toBeDefined();
  });

  // A writer that cannot load falls back to the main thread with only a warning, so the tests above would still
  // pass: this one fails if the thread's module needs a loader that a worker does not get. Three ways Plinth
  // runs: here (vitest), `node --import tsx` (npm start: the test above), and tsx's register() (bin/plinth.js).
  it('the writer thread loads under vitest and under tsx register() with no flags (no fallback to the main thread)', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      const store = openSqliteStore(dbFile());
      await Promise.all([store.putBatched('leases', 'a', { x: 1 }), store.putBatched('leases', 'b', null)]);
      await store.close();
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.includes('writer thread'))).toEqual([]);

    const viaRegister = fileURLToPath(new URL('./writer-register.mjs', import.meta.url));
    const file = dbFile();
    const r = spawnSync(process.execPath, [viaRegister, file], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.stdout).toContain('WRITTEN');
    expect(r.stderr).not.toMatch(/writer thread stopped/);
    expect(onDisk(file, '10.0.0.49')).toBeDefined();
  });
});

describe("the writer thread's group commit and checkpoints (groupCommitter, no thread)", () => {
  const item = (key: string): BatchItem => ({ kind: 'leases', key, json: '{}' });
  /** A committer whose deferred steps run only when the test says, logging what it does in order. */
  const harness = (every: number, failOn?: string) => {
    const log: string[] = [];
    const queue: (() => void)[] = [];
    const w = groupCommitter<string>({
      commit(items) {
        if (items.some((i) => i.key === failOn)) throw new Error('disk full');
        log.push(`commit ${items.map((i) => i.key).join(',')}`);
      },
      confirm: (ws, err) => log.push(`confirm ${ws.join(',')}${err ? ` (${err})` : ''}`),
      checkpoint: () => log.push('checkpoint'),
      checkpointEvery: every,
      defer: (f) => queue.push(f),
    });
    const turn = () => {
      for (const f of queue.splice(0)) f();
    };
    return { w, log, turn };
  };

  it('commits what one turn added in one transaction and confirms it before any checkpoint', () => {
    const { w, log, turn } = harness(3);
    w.add([item('a'), item('b')], 'w1');
    w.add([item('c')], 'w2');
    expect(log).toEqual([]);
    turn();
    expect(log).toEqual(['commit a,b,c', 'confirm w1,w2']);
    turn();
    expect(log).toEqual(['commit a,b,c', 'confirm w1,w2', 'checkpoint']);
  });

  it('commits and confirms the batches queued when a checkpoint is due before running it', () => {
    const { w, log, turn } = harness(2);
    w.add([item('a'), item('b')], 'w1');
    turn(); // commits w1; the checkpoint is now due, in the next turn
    w.add([item('c')], 'w2'); // arrives meanwhile
    turn();
    expect(log).toEqual(['commit a,b', 'confirm w1', 'commit c', 'confirm w2', 'checkpoint']);
  });

  it('no checkpoint before checkpointEvery items; a failed commit answers its waiters and the next one goes on', () => {
    const { w, log, turn } = harness(10, 'bad');
    w.add([item('a')], 'w1');
    turn();
    w.add([item('bad')], 'w2');
    turn();
    w.add([item('c')], 'w3');
    turn();
    turn();
    expect(log).toEqual(['commit a', 'confirm w1', 'confirm w2 (disk full)', 'commit c', 'confirm w3']);
  });
});
