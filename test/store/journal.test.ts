/**
 * putBatched's lease journal (src/store/journal.ts, native/journal.c): a write resolves once its record is on disk,
 * and nothing it resolved is lost to a kill -9 (the child is killed from outside, at whatever point it is); other
 * store calls see journaled writes before they are applied; a later API delete is never undone by an earlier
 * journaled upsert, neither while running nor by the replay after a crash; recovery stops at a torn record; a
 * journal that fails refuses what it had not made durable and the store goes on through the writer thread.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { decodeItem, readRecords, segmentPrefix, segments } from '../../src/store/journal-recovery.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { BackendError, ConflictError } from '../../src/store/store.js';

const CHILD = fileURLToPath(new URL('./journal-child.ts', import.meta.url));
const dbFile = () => path.join(mkdtempSync(path.join(tmpdir(), 'plinth-journal-')), 'plinth.db');
const rows = (file: string) => {
  const db = new Database(file, { readonly: true });
  try {
    return new Map(
      (db.prepare('SELECT key, doc FROM leases').all() as { key: string; doc: string }[]).map((r) => [r.key, r.doc]),
    );
  } finally {
    db.close();
  }
};
const journaled = (file: string) =>
  segments(file).flatMap((s) => readRecords(readFileSync(s.path)).map((r) => r.payload));

/** Starts the child, SIGKILLs it once `acks` lines are in the ack file; returns those lines. */
function loadThenKill(file: string, acks: number, durability: 'disk' | 'kernel' = 'disk'): Promise<string[]> {
  const ackFile = `${file}.acks`;
  writeFileSync(ackFile, '');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, 'load', file, ackFile, durability], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
    });
    const started = Date.now();
    const poll = setInterval(() => {
      const n = readFileSync(ackFile, 'utf8').split('\n').length;
      if (n >= acks || Date.now() - started > 60_000) child.kill('SIGKILL');
    }, 5);
    child.on('exit', (_code, signal) => {
      clearInterval(poll);
      if (signal !== 'SIGKILL') return reject(new Error(`child exited by itself: ${err}`));
      resolve(readFileSync(ackFile, 'utf8').split('\n').filter(Boolean));
    });
  });
}

describe.skipIf(!native.leaseJournal)('the lease journal', () => {
  // 'kernel': acknowledged once written, not fdatasynced (--lease-durability): a kill -9 loses nothing either.
  it.each(['disk', 'kernel'] as const)(
    '%s: every write acknowledged before a kill -9 from outside is recovered, deletes included',
    async (durability) => {
      const file = dbFile();
      // A small segment size: the load crosses several segments, removed as they are applied.
      await openSqliteStore(file).close();
      const lines = await loadThenKill(file, 3000, durability);
      const puts = lines.filter((l) => l.startsWith('+ ')).map((l) => l.slice(2));
      const asked = new Set(lines.filter((l) => l.startsWith('? ')).map((l) => l.slice(2)));
      const deleted = lines.filter((l) => l.startsWith('- ')).map((l) => l.slice(2));
      expect(puts.length).toBeGreaterThan(2000);
      // Before recovery every acknowledged write is in SQLite or in the journal.
      const before = rows(file);
      const inJournal = new Set(journaled(file).map((p) => p.split('\n')[2]!.replace(/\{.*$/, '')));
      expect(puts.filter((k) => !before.has(k) && !inJournal.has(k))).toEqual([]);

      const store = openSqliteStore(file);
      const after = new Set((await store.list('leases')).items.map((i) => i.key));
      await store.close();
      expect(segments(file)).toEqual([]);
      expect(puts.filter((k) => !asked.has(k) && !after.has(k))).toEqual([]);
      expect(deleted.filter((k) => after.has(k))).toEqual([]);
    },
    90_000,
  );

  it('an API delete after a journaled upsert is not undone by the replay after a kill -9', () => {
    const file = dbFile();
    const r = spawnSync(process.execPath, ['--import', 'tsx', CHILD, 'delete', file], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.stdout).toContain('DELETED');
    expect(r.signal).toBe('SIGKILL');
    // The segment with both upserts is still there: the replay must skip what the applied mark covers.
    expect(journaled(file).length).toBe(2);
    const db = new Database(file);
    expect(db.prepare('SELECT seq FROM journal_applied').pluck().get()).toBe(2);
    db.close();
    const store = openSqliteStore(file);
    return Promise.all([store.get('leases', 'gone'), store.get('leases', 'kept')]).then(async ([gone, kept]) => {
      expect(gone).toBeUndefined();
      expect(kept?.doc).toEqual({ v: 1 });
      await store.close();
    });
  });

  it('reads and API writes see journaled writes that are not applied yet, in order', async () => {
    const file = dbFile();
    // No timed apply: only the drains of the calls below move writes into SQLite.
    const store = openSqliteStore(file, { applyMs: 600_000, applyItems: 1e9 });
    await store.putBatched('leases', 'a', { v: 1 });
    await store.putBatched('leases', 'b', { v: 1 });
    expect(rows(file).size).toBe(0);
    expect((await store.get('leases', 'a'))?.doc).toEqual({ v: 1 });
    await store.putBatched('leases', 'a', { v: 2 });
    await store.putBatched('leases', 'b', null);
    expect((await store.list('leases')).items.map((i) => [i.key, i.doc])).toEqual([['a', { v: 2 }]]);
    // A create sees the journaled row; a remove is not undone by the upsert journaled before it.
    await store.putBatched('leases', 'c', { v: 1 });
    await expect(store.create('leases', 'c', { v: 9 })).rejects.toBeInstanceOf(ConflictError);
    await store.putBatched('leases', 'd', { v: 1 });
    await store.remove('leases', 'd');
    await store.putBatched('leases', 'a', { v: 3 });
    await store.remove('leases', 'a');
    await store.putBatched('leases', 'e', { v: 1 });
    expect(await store.get('leases', 'd')).toBeUndefined();
    await store.close();
    expect(segments(file)).toEqual([]);
    const again = openSqliteStore(file);
    expect((await again.list('leases')).items.map((i) => i.key)).toEqual(['c', 'e']);
    await again.close();
  });

  it('writes beyond the backlog bound are refused, not queued, and accepted again once applied', async () => {
    const file = dbFile();
    // Nothing applied on its own: the backlog only grows until a read drains it.
    const store = openSqliteStore(file, { applyMs: 600_000, applyItems: 1e9, maxBacklog: 5 });
    for (let i = 0; i < 5; i++) await store.putBatched('leases', `k${i}`, { v: i });
    const refused = store.putBatched('leases', 'k5', { v: 5 });
    await expect(refused).rejects.toBeInstanceOf(BackendError);
    await expect(refused).rejects.toThrow(/storage backlog/);
    expect(await store.get('leases', 'k5')).toBeUndefined(); // the read drains the five into SQLite
    await store.putBatched('leases', 'k5', { v: 5 });
    expect((await store.list('leases')).items.map((i) => i.key)).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5']);
    await store.close();
  });

  it('a record holds the write byte for byte, whatever its characters', async () => {
    const file = dbFile();
    const store = openSqliteStore(file, { applyMs: 600_000, applyItems: 1e9 });
    const doc = { hostname: 'café-😀-\u0000-\n', note: '\u00e9'.repeat(1000), n: 1 };
    await store.putBatched('leases', 'k\n1', doc);
    await store.putBatched('machines', 'm', null);
    expect(journaled(file).map(decodeItem)).toEqual([
      { kind: 'leases', key: 'k\n1', json: JSON.stringify(doc) },
      { kind: 'machines', key: 'm', json: null },
    ]);
    await store.close();
  });

  it('recovery stops at a torn record and applies the whole ones before it', async () => {
    const file = dbFile();
    const addon = native.leaseJournal!;
    const done: number[] = [];
    const h = addon.journalOpen(segmentPrefix(file), 1, 1, 1 << 16, (seq) => done.push(seq));
    // journal_applied does not exist yet: the database is created by the opener below, its mark 0.
    for (const k of ['x', 'y', 'z']) addon.journalAppend(h, `Pleases\n1\n${k}{"k":"${k}"}`);
    expect(addon.journalClose(h)).toBe(3);
    const seg = segments(file)[0]!.path;
    const buf = readFileSync(seg);
    expect(readRecords(buf).map((r) => r.seq)).toEqual([1, 2, 3]);
    // One byte of y's payload flipped, as a write torn by a power loss would leave it.
    const at = buf.indexOf('y{"k"');
    buf[at + 3] ^= 0x20;
    writeFileSync(seg, buf);
    expect(readRecords(buf).map((r) => r.seq)).toEqual([1]);
    const store = openSqliteStore(file);
    expect((await store.list('leases')).items.map((i) => i.key)).toEqual(['x']);
    await store.close();
    expect(existsSync(seg)).toBe(false);
  });

  it('a journal that fails refuses the writes it had not made durable; later writes go through the writer', async () => {
    const file = dbFile();
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      // Segments of 4 KiB, and a directory where the second one should go: the rotation fails.
      const store = openSqliteStore(file, { segmentBytes: 4096 });
      mkdirSync(`${segmentPrefix(file)}.00000002`);
      // Ten at a time: the segment fills after a few rounds.
      const results: PromiseSettledResult<void>[] = [];
      for (let i = 0; i < 200; i += 10) {
        const round = Array.from({ length: 10 }, (_, j) =>
          store.putBatched('leases', `k${i + j}`, { pad: 'x'.repeat(40) }),
        );
        // A read waiting for the round's writes: answered also when the journal fails under it.
        const read = store.list('leases');
        results.push(...(await Promise.allSettled(round)));
        await read;
      }
      const failed = results.filter((r) => r.status === 'rejected');
      expect(failed.length).toBeGreaterThan(0);
      for (const f of failed) expect((f as PromiseRejectedResult).reason).toBeInstanceOf(BackendError);
      const ok = results.flatMap((r, i) => (r.status === 'fulfilled' ? [`k${i}`] : []));
      expect(ok.length).toBeGreaterThan(10);
      await store.putBatched('leases', 'later', { v: 1 });
      const keys = new Set((await store.list('leases')).items.map((i) => i.key));
      expect(ok.filter((k) => !keys.has(k))).toEqual([]);
      expect(keys.has('later')).toBe(true);
      await store.close();
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.some((m) => m.includes('lease journal stopped'))).toBe(true);
  });

  it.each(['disk', 'kernel'] as const)(
    '%s: segments whose writes are all applied are removed as it runs',
    async (durability) => {
      const file = dbFile();
      const store = openSqliteStore(file, { segmentBytes: 4096, durability, applyMs: 5 });
      // ~120 bytes a record: 34 a segment, so 600 writes fill about 18 of them.
      for (let i = 0; i < 600; i += 20)
        await Promise.all(
          Array.from({ length: 20 }, (_, j) => store.putBatched('leases', `k${i + j}`, { pad: 'x'.repeat(60) })),
        );
      // A read waits for everything journaled to be applied; the removals follow it (unlink off the loop).
      expect((await store.list('leases')).total).toBe(600);
      for (let t = 0; segments(file).length > 2 && t < 100; t++) await new Promise((r) => setTimeout(r, 10));
      expect(segments(file).length).toBeLessThanOrEqual(2);
      await store.close();
      expect(segments(file)).toEqual([]);
    },
  );
});
