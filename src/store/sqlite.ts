import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import {
  type BatchItem,
  batchTransaction,
  durablePragmas,
  encodeBatch,
  etagOf,
  PendingBatch,
  statementCache,
} from './batch.mjs';
import { MIGRATIONS } from './migrations.js';
import {
  BackendError,
  ConflictError,
  type Doc,
  KINDS,
  type Kind,
  type ListQuery,
  NotFoundError,
  PreconditionError,
  type Store,
  type Stored,
  StoreError,
  type UniqueValue,
  type WriteOptions,
} from './store.js';

const fieldRe = /^[A-Za-z_][A-Za-z0-9_]*$/;

export { etagOf };

type Row = { key: string; doc: string; etag: string };

export type SqliteOptions = {
  /**
   * Where putBatched's transactions run. 'thread' (default for a file): a worker thread with its own
   * connection commits them, so the commit and its fsync (and WAL checkpoints) never block the event loop:
   * DHCP keeps reading packets while a batch is made durable. 'inline' (':memory:', which one connection
   * only can see): on the main thread, at most one commit per `groupCommitMs`.
   */
  writer?: 'thread' | 'inline';
  /** Inline writer only: at most one commit per this many ms under load (default 4; 0 = every turn). */
  groupCommitMs?: number;
};

// The writer thread's module: plain JavaScript, so it needs no loader (tsx's is not registered in workers).
const WRITER = new URL('./writer-thread.mjs', import.meta.url);

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

/**
 * SQLite backend: WAL mode, synchronous=FULL (an acknowledged write survives kill -9 and power loss),
 * foreign keys on, migrations applied at open.
 */
export function openSqliteStore(file: string, opts: SqliteOptions = {}): Store & { schemaVersion: number } {
  if (file !== ':memory:') ownerOnly(file);
  const db = new Database(file);
  durablePragmas(db);
  db.pragma('foreign_keys = ON');
  migrate(db);

  const prep = statementCache(db);
  const kindOk = (kind: Kind): Kind => {
    if (!(KINDS as readonly string[]).includes(kind)) throw new StoreError(`unknown kind ${kind}`);
    return kind;
  };
  // The document is parsed only when someone reads it: GETs stream the stored JSON as it is.
  const toStored = (r: Row): Stored => {
    let parsed: Doc | undefined;
    return {
      key: r.key,
      etag: r.etag,
      json: r.doc,
      get doc() {
        parsed ??= JSON.parse(r.doc) as Doc;
        return parsed;
      },
    };
  };
  const getRow = (kind: Kind, key: string) =>
    prep(`SELECT key, doc, etag FROM ${kindOk(kind)} WHERE key = ?`).get(key) as Row | undefined;

  const checkUniques = (kind: Kind, key: string, uniques: UniqueValue[]) => {
    const q = prep('SELECT key FROM uniq WHERE kind = ? AND field = ? AND value = ?');
    for (const u of uniques) {
      const owner = q.get(kind, u.field, u.value) as { key: string } | undefined;
      if (owner && owner.key !== key) throw new ConflictError(kind, u.field, u.value, owner.key);
    }
  };
  const writeUniques = (kind: Kind, key: string, uniques: UniqueValue[]) => {
    prep('DELETE FROM uniq WHERE kind = ? AND key = ?').run(kind, key);
    const ins = prep('INSERT INTO uniq (kind, field, value, key) VALUES (?, ?, ?, ?)');
    for (const u of uniques) ins.run(kind, u.field, u.value, key);
  };

  // Wraps better-sqlite3's errors so callers see Plinth's error types, never a raw SQLITE_* with a stack.
  const guard = <T>(fn: () => T): Promise<T> => {
    try {
      return Promise.resolve(fn());
    } catch (err) {
      if (err instanceof StoreError) return Promise.reject(err);
      return Promise.reject(new BackendError(`storage failed: ${(err as Error).message}`));
    }
  };

  const create = db.transaction((kind: Kind, key: string, doc: Doc, uniques: UniqueValue[]): Stored => {
    if (getRow(kind, key)) throw new ConflictError(kind, 'key', key, key);
    checkUniques(kind, key, uniques);
    const json = JSON.stringify(doc);
    const etag = etagOf(json);
    prep(`INSERT INTO ${kindOk(kind)} (key, doc, etag) VALUES (?, ?, ?)`).run(key, json, etag);
    writeUniques(kind, key, uniques);
    return { key, doc, etag, json };
  });

  const replace = db.transaction(
    (kind: Kind, key: string, doc: Doc, uniques: UniqueValue[], opts: WriteOptions): Stored => {
      const old = getRow(kind, key);
      if (!old) throw new NotFoundError(kind, key);
      if (opts.ifMatch !== undefined && opts.ifMatch !== old.etag) throw new PreconditionError(kind, key);
      checkUniques(kind, key, uniques);
      const json = JSON.stringify(doc);
      const etag = etagOf(json);
      prep(`UPDATE ${kindOk(kind)} SET doc = ?, etag = ? WHERE key = ?`).run(json, etag, key);
      writeUniques(kind, key, uniques);
      return { key, doc, etag, json };
    },
  );

  const remove = db.transaction((kind: Kind, key: string, opts: WriteOptions) => {
    const old = getRow(kind, key);
    if (!old) throw new NotFoundError(kind, key);
    if (opts.ifMatch !== undefined && opts.ifMatch !== old.etag) throw new PreconditionError(kind, key);
    prep(`DELETE FROM ${kindOk(kind)} WHERE key = ?`).run(key);
    prep('DELETE FROM uniq WHERE kind = ? AND key = ?').run(kind, key);
  });

  // Packet-rate writes: everything queued during one event-loop turn is committed in one transaction, by the
  // writer thread (which also joins the batches that arrive while it commits) or inline.
  type Pending = BatchItem & { kind: Kind };
  type Waiter = { resolve: () => void; reject: (e: Error) => void };
  const pending = new PendingBatch<Pending, Waiter>();
  let scheduled = false;
  const flushTx = batchTransaction(db, prep);
  const commitInline = (items: Pending[], ws: Waiter[]) => {
    try {
      flushTx(items);
      for (const w of ws) w.resolve();
    } catch (err) {
      const e = new BackendError(`storage failed: ${(err as Error).message}`);
      for (const w of ws) w.reject(e);
    }
  };

  let worker: Worker | undefined;
  let nextId = 1;
  // Sent to the writer, not yet confirmed: kept so that a writer that dies can be replayed inline (the writes
  // are idempotent upserts and deletes, replayed in order).
  const inFlight = new Map<number, { items: Pending[]; ws: Waiter[] }>();
  let onWriterClosed: (() => void) | undefined;
  const writerDown = (why: string) => {
    if (!worker) return;
    worker = undefined;
    writerFailed = true;
    const left = [...inFlight.values()];
    inFlight.clear();
    for (const b of left) commitInline(b.items, b.ws);
    if (pending.items.length) schedule();
    onWriterClosed?.();
    if (!closed) process.emitWarning(`plinth store: the writer thread stopped (${why}); writing on the main thread`);
  };
  // Started with the first batch: a store opened only to read (a CLI, a test, the benchmark's check) has no thread.
  let writerFailed = (opts.writer ?? 'thread') === 'inline' || file === ':memory:';
  const startWriter = () => {
    const w = new Worker(WRITER, {
      workerData: { file },
      // Not the daemon's loader flags (tsx): the writer is plain JavaScript.
      execArgv: [],
    });
    w.unref(); // referenced only while a batch is in flight, so an idle store never keeps a process alive
    w.on('message', (m: { ids?: number[]; error?: string; closed?: boolean }) => {
      if (m.closed) {
        onWriterClosed?.();
        return;
      }
      const e = m.error === undefined ? undefined : new BackendError(`storage failed: ${m.error}`);
      for (const id of m.ids ?? []) {
        const b = inFlight.get(id);
        inFlight.delete(id);
        for (const x of b?.ws ?? []) e ? x.reject(e) : x.resolve();
      }
      if (inFlight.size === 0) {
        // The batch that gathered while this one committed goes now.
        if (pending.items.length) flush();
        else w.unref();
      }
    });
    w.on('error', (err) => writerDown(err.message));
    w.on('exit', (code) => writerDown(`exit code ${code}`));
    worker = w;
  };

  // Inline pacing: the first write of a quiet period commits in the current turn; under load at most one
  // commit per groupCommitMs, the writes that arrive meanwhile sharing it.
  const GROUP_MS = opts.groupCommitMs ?? 4;
  let lastFlush = 0;
  const flush = () => {
    scheduled = false;
    const { items, waiters: ws } = pending.take();
    if (items.length === 0) return;
    if (!worker && !writerFailed && !closed) startWriter();
    if (worker) {
      const id = nextId++;
      inFlight.set(id, { items, ws });
      worker.ref();
      worker.postMessage({ id, flat: encodeBatch(items) });
      return;
    }
    lastFlush = performance.now();
    commitInline(items, ws);
  };
  const schedule = () => {
    // One batch at the writer at a time (a message per event-loop turn costs more than the writes): the next
    // one is sent when the writer confirms the current one.
    if (scheduled || (worker && inFlight.size > 0)) return;
    scheduled = true;
    const wait = !writerFailed ? 0 : lastFlush + GROUP_MS - performance.now();
    if (wait <= 0) setImmediate(flush);
    else setTimeout(flush, wait);
  };
  let closed = false;

  const store: Store & { schemaVersion: number } = {
    schemaVersion: db.pragma('user_version', { simple: true }) as number,
    get: (kind, key) =>
      guard(() => {
        const r = getRow(kind, key);
        return r ? toStored(r) : undefined;
      }),
    list: (kind, q: ListQuery = {}) =>
      guard(() => {
        const where: string[] = [];
        const args: unknown[] = [];
        for (const f of q.filters ?? []) {
          if (!fieldRe.test(f.field)) throw new StoreError(`bad filter field ${f.field}`);
          const v = typeof f.value === 'boolean' ? (f.value ? 1 : 0) : f.value;
          if (f.array) {
            where.push(`EXISTS (SELECT 1 FROM json_each(doc, '$.${f.field}') WHERE value = ?)`);
            args.push(v);
          } else if (v === null) {
            where.push(`json_extract(doc, '$.${f.field}') IS NULL`);
          } else {
            where.push(`json_extract(doc, '$.${f.field}') = ?`);
            args.push(v);
          }
        }
        const w = where.length ? ` WHERE ${where.join(' AND ')}` : '';
        let order = ' ORDER BY key';
        if (q.sort) {
          if (!fieldRe.test(q.sort.field)) throw new StoreError(`bad sort field ${q.sort.field}`);
          order = ` ORDER BY json_extract(doc, '$.${q.sort.field}') ${q.sort.desc ? 'DESC' : 'ASC'}, key`;
        }
        const limit = q.limit ?? -1;
        const offset = q.offset ?? 0;
        const rows = prep(`SELECT key, doc, etag FROM ${kindOk(kind)}${w}${order} LIMIT ? OFFSET ?`).all(
          ...args,
          limit,
          offset,
        ) as Row[];
        const total =
          q.limit === undefined && offset === 0
            ? rows.length
            : (prep(`SELECT count(*) AS n FROM ${kindOk(kind)}${w}`).get(...args) as { n: number }).n;
        return { items: rows.map(toStored), total };
      }),
    keyOf: (kind, field, value) =>
      guard(() => {
        const r = prep('SELECT key FROM uniq WHERE kind = ? AND field = ? AND value = ?').get(kind, field, value) as
          | { key: string }
          | undefined;
        return r?.key;
      }),
    // BEGIN IMMEDIATE: these read, then write. A deferred transaction would start as a reader, and with the
    // writer thread committing meanwhile its upgrade to a writer fails at once with SQLITE_BUSY (WAL snapshot),
    // whatever busy_timeout says; taking the write lock first waits for the writer's commit instead.
    create: (kind, key, doc, uniques = []) => guard(() => create.immediate(kind, key, doc, uniques)),
    replace: (kind, key, doc, uniques = [], opts = {}) => guard(() => replace.immediate(kind, key, doc, uniques, opts)),
    remove: (kind, key, opts = {}) => guard(() => remove.immediate(kind, key, opts)),
    putBatched: (kind, key, doc) =>
      new Promise<void>((resolve, reject) => {
        if (closed) return reject(new BackendError('store is closed'));
        try {
          pending.items.push({ kind: kindOk(kind), key, json: doc === null ? null : JSON.stringify(doc) });
        } catch (err) {
          return reject(
            err instanceof StoreError ? err : new BackendError(`storage failed: ${(err as Error).message}`),
          );
        }
        pending.waiters.push({ resolve, reject });
        schedule();
      }),
    ping: () => guard(() => db.prepare('SELECT 1').get() !== undefined),
    close: async () => {
      if (closed) return;
      if (pending.items.length) flush();
      closed = true;
      const w = worker;
      if (w) {
        // The writer answers every batch before { closed }: all confirmed (or replayed inline) after this.
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 10_000);
          onWriterClosed = () => {
            clearTimeout(t);
            resolve();
          };
          w.ref();
          w.postMessage({ close: true });
        });
        worker = undefined;
        await w.terminate();
      }
      db.close();
    },
  };
  return store;
}

function migrate(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
  if (current > latest) {
    throw new StoreError(
      `the database schema is version ${current} but this Plinth knows up to ${latest}: run a newer Plinth or restore a backup`,
    );
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
}
