/**
 * The SQLite backend of the Store: one file, WAL, synchronous=FULL (an acknowledged write survives kill -9 and
 * power loss), foreign keys on, migrations applied at open. Its parts: migrations.ts (schema), sqlite-docs.ts
 * (statements on documents and unique values), sqlite-batch.ts (putBatched's group commit and writer thread),
 * batch.mjs (what the main thread and the writer thread both do to the database), journal.ts (putBatched's lease
 * journal, replayed here at open).
 */
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { durablePragmas, etagOf, statementCache } from './batch.mjs';
import { sqliteExpireLeases } from './lease-expiry.js';
import { migrate } from './migrations.js';
import { type BatchOptions, batchWriter } from './sqlite-batch.js';
import { docStatements, kindOk } from './sqlite-docs.js';
import { sqliteLeaseClaims } from './sqlite-leases.js';
import { asStoreError, type Store } from './store.js';

export { etagOf };

export type SqliteOptions = BatchOptions;

/**
 * The database holds secure params in clear: it and its -wal/-shm companions are the owner's only (0600), also
 * when an older version left them world-readable. The file is created 0600 before SQLite opens it (SQLite gives
 * -wal and -shm the database's mode); companions that already exist are tightened too.
 */
function ownerOnly(file: string) {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  closeSync(openSync(file, 'a', 0o600));
  for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) {
    try {
      chmodSync(f, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

// Wraps better-sqlite3's errors so callers see Plinth's error types, never a raw SQLITE_* with a stack.
function guard<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(asStoreError(err));
  }
}

export function openSqliteStore(file: string, opts: SqliteOptions = {}): Store & { schemaVersion: number } {
  if (file !== ':memory:') ownerOnly(file);
  const db = new Database(file);
  durablePragmas(db);
  db.pragma('foreign_keys = ON');
  migrate(db);

  const prep = statementCache(db);
  const docs = docStatements(db, prep);
  const batches = batchWriter(db, prep, file, opts);
  const claim = sqliteLeaseClaims(db, prep);
  const expire = sqliteExpireLeases(db);
  let closed = false;
  // A kind with journaled writes not yet in SQLite is read or written only once they are applied (drain): reads
  // see every acknowledged write, and an API delete is never undone by an earlier journaled upsert.
  const seen = <T>(kind: string, fn: () => T): Promise<T> =>
    batches.pending(kind) ? batches.drain().then(() => guard(fn)) : guard(fn);

  return {
    schemaVersion: db.pragma('user_version', { simple: true }) as number,
    get: (kind, key) => seen(kind, () => docs.get(kind, key)),
    getMany: (kind, keys) =>
      seen(kind, () =>
        [...new Set(keys)]
          .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
          .flatMap((k) => docs.get(kind, k) ?? []),
      ),
    list: (kind, q = {}) => seen(kind, () => docs.list(kind, q)),
    keyOf: (kind, field, value) => seen(kind, () => docs.keyOf(kind, field, value)),
    // BEGIN IMMEDIATE: these read, then write. A deferred transaction would start as a reader, and with the
    // writer thread committing meanwhile its upgrade to a writer fails at once with SQLITE_BUSY (WAL snapshot),
    // whatever busy_timeout says; taking the write lock first waits for the writer's commit instead.
    create: (kind, key, doc, uniques = []) => seen(kind, () => docs.create.immediate(kind, key, doc, uniques)),
    replace: (kind, key, doc, uniques = [], o = {}) =>
      seen(kind, () => docs.replace.immediate(kind, key, doc, uniques, o)),
    remove: (kind, key, o = {}) => seen(kind, () => docs.remove.immediate(kind, key, o)),
    putBatched: (kind, key, doc, send) =>
      batches.put(() => ({ kind: kindOk(kind), key, json: doc === null ? null : JSON.stringify(doc) }), send),
    claimLease: (c) => seen('leases', () => claim(c)),
    expireLeases: (before, o) => seen('leases', () => expire(before, o)),
    ping: () => guard(() => db.prepare('SELECT 1').get() !== undefined),
    close: async () => {
      if (closed) return;
      closed = true;
      await batches.close();
      db.close();
    },
  };
}
