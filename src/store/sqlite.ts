import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
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

export function etagOf(json: string): string {
  return createHash('sha256').update(json).digest('base64url').slice(0, 22);
}

type Row = { key: string; doc: string; etag: string };

/**
 * SQLite backend: WAL mode, synchronous=FULL (an acknowledged write survives kill -9 and power loss),
 * foreign keys on, migrations applied at open.
 */
export function openSqliteStore(file: string): Store & { schemaVersion: number } {
  if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);

  const stmts = new Map<string, Database.Statement>();
  const prep = (sql: string): Database.Statement => {
    let s = stmts.get(sql);
    if (!s) {
      s = db.prepare(sql);
      stmts.set(sql, s);
    }
    return s;
  };
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

  // Packet-rate writes: everything queued during one event-loop turn is committed in one transaction.
  type Pending = { kind: Kind; key: string; doc: Doc | null };
  let queue: Pending[] = [];
  let waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  let scheduled = false;
  const flushTx = db.transaction((items: Pending[]) => {
    for (const it of items) {
      if (it.doc === null) {
        prep(`DELETE FROM ${kindOk(it.kind)} WHERE key = ?`).run(it.key);
      } else {
        const json = JSON.stringify(it.doc);
        prep(
          `INSERT INTO ${kindOk(it.kind)} (key, doc, etag) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET doc = excluded.doc, etag = excluded.etag`,
        ).run(it.key, json, etagOf(json));
      }
    }
  });
  const flush = () => {
    scheduled = false;
    const items = queue;
    const ws = waiters;
    queue = [];
    waiters = [];
    try {
      flushTx(items);
      for (const w of ws) w.resolve();
    } catch (err) {
      const e = new BackendError(`storage failed: ${(err as Error).message}`);
      for (const w of ws) w.reject(e);
    }
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
    create: (kind, key, doc, uniques = []) => guard(() => create(kind, key, doc, uniques)),
    replace: (kind, key, doc, uniques = [], opts = {}) => guard(() => replace(kind, key, doc, uniques, opts)),
    remove: (kind, key, opts = {}) => guard(() => remove(kind, key, opts)),
    putBatched: (kind, key, doc) =>
      new Promise<void>((resolve, reject) => {
        if (closed) return reject(new BackendError('store is closed'));
        queue.push({ kind, key, doc });
        waiters.push({ resolve, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      }),
    ping: () => guard(() => db.prepare('SELECT 1').get() !== undefined),
    close: async () => {
      if (closed) return;
      if (scheduled) flush();
      closed = true;
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
