/**
 * The SQLite store's statements on documents and their unique values: synchronous (better-sqlite3), each write
 * one transaction. sqlite.ts wraps them into the async Store; putBatched's writes are sqlite-batch.ts's.
 */
import type Database from 'better-sqlite3';
import { etagOf, type Prep } from './batch.mjs';
import {
  ConflictError,
  type Doc,
  KINDS,
  type Kind,
  type ListQuery,
  NotFoundError,
  PreconditionError,
  type Stored,
  StoreError,
  type UniqueValue,
  type WriteOptions,
} from './store.js';

type Row = { key: string; doc: string; etag: string };
/** A list row in better-sqlite3's raw mode: [key, doc, etag], no object per row (2,500 of them in a big list). */
type RawRow = [string, string, string];

const fieldRe = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The kind as a table name: only the known ones ever reach SQL text. */
export function kindOk(kind: Kind): Kind {
  if (!(KINDS as readonly string[]).includes(kind)) throw new StoreError(`unknown kind ${kind}`);
  return kind;
}

// The document is parsed only when someone reads it: GETs and lists send the stored JSON as it is.
function stored(key: string, json: string, etag: string): Stored {
  let parsed: Doc | undefined;
  return {
    key,
    etag,
    json,
    get doc() {
      parsed ??= JSON.parse(json) as Doc;
      return parsed;
    },
  };
}
const toStored = (r: Row) => stored(r.key, r.doc, r.etag);
const rawToStored = (r: RawRow) => stored(r[0], r[1], r[2]);

/** `WHERE ... ORDER BY ...` of a list query and its arguments; field names are checked, values are bound. */
function listClauses(q: ListQuery): { where: string; order: string; args: unknown[] } {
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
  let order = ' ORDER BY key';
  if (q.sort) {
    if (!fieldRe.test(q.sort.field)) throw new StoreError(`bad sort field ${q.sort.field}`);
    order = ` ORDER BY json_extract(doc, '$.${q.sort.field}') ${q.sort.desc ? 'DESC' : 'ASC'}, key`;
  }
  return { where: where.length ? ` WHERE ${where.join(' AND ')}` : '', order, args };
}

/** A list query's SQL and its arguments (exported so a test can ask SQLite which index it walks). */
export function listQuery(kind: Kind, q: ListQuery): { sql: string; args: unknown[]; where: string } {
  const { where, order, args } = listClauses(q);
  const sql = `SELECT key, doc, etag FROM ${kindOk(kind)}${where}${order} LIMIT ? OFFSET ?`;
  return { sql, args: [...args, q.limit ?? -1, q.offset ?? 0], where };
}

export function docStatements(db: Database.Database, prep: Prep) {
  const getRow = (kind: Kind, key: string) =>
    prep(`SELECT key, doc, etag FROM ${kindOk(kind)} WHERE key = ?`).get(key) as Row | undefined;
  const ownerOf = (kind: Kind, field: string, value: string) =>
    (
      prep('SELECT key FROM uniq WHERE kind = ? AND field = ? AND value = ?').get(kind, field, value) as
        | { key: string }
        | undefined
    )?.key;
  const checkUniques = (kind: Kind, key: string, uniques: UniqueValue[]) => {
    for (const u of uniques) {
      const owner = ownerOf(kind, u.field, u.value);
      if (owner !== undefined && owner !== key) throw new ConflictError(kind, u.field, u.value, owner);
    }
  };
  const writeUniques = (kind: Kind, key: string, uniques: UniqueValue[]) => {
    prep('DELETE FROM uniq WHERE kind = ? AND key = ?').run(kind, key);
    const ins = prep('INSERT INTO uniq (kind, field, value, key) VALUES (?, ?, ?, ?)');
    for (const u of uniques) ins.run(kind, u.field, u.value, key);
  };
  // The row as it is now, checked against the writer's If-Match.
  const current = (kind: Kind, key: string, opts: WriteOptions) => {
    const old = getRow(kind, key);
    if (!old) throw new NotFoundError(kind, key);
    if (opts.ifMatch !== undefined && opts.ifMatch !== old.etag) throw new PreconditionError(kind, key);
    return old;
  };

  // List statements in raw mode, cached apart from `prep`'s: a statement's mode is its own, shared by every user.
  const listStatements = new Map<string, Database.Statement>();
  const listStatement = (sql: string) => {
    let st = listStatements.get(sql);
    if (!st) {
      st = db.prepare(sql).raw(true);
      if (listStatements.size >= 256) listStatements.clear();
      listStatements.set(sql, st);
    }
    return st;
  };

  return {
    get(kind: Kind, key: string): Stored | undefined {
      const r = getRow(kind, key);
      return r ? toStored(r) : undefined;
    },
    list(kind: Kind, q: ListQuery): { items: Stored[]; total: number } {
      const { sql, args, where } = listQuery(kind, q);
      const offset = q.offset ?? 0;
      const rows = listStatement(sql).all(...args) as RawRow[];
      const total =
        q.limit === undefined && offset === 0
          ? rows.length
          : (prep(`SELECT count(*) AS n FROM ${kindOk(kind)}${where}`).get(...args.slice(0, -2)) as { n: number }).n;
      return { items: rows.map(rawToStored), total };
    },
    keyOf: ownerOf,
    create: db.transaction((kind: Kind, key: string, doc: Doc, uniques: UniqueValue[]): Stored => {
      if (getRow(kind, key)) throw new ConflictError(kind, 'key', key, key);
      checkUniques(kind, key, uniques);
      const json = JSON.stringify(doc);
      const etag = etagOf(json);
      prep(`INSERT INTO ${kindOk(kind)} (key, doc, etag) VALUES (?, ?, ?)`).run(key, json, etag);
      writeUniques(kind, key, uniques);
      return { key, doc, etag, json };
    }),
    replace: db.transaction((kind: Kind, key: string, doc: Doc, uniques: UniqueValue[], opts: WriteOptions): Stored => {
      current(kind, key, opts);
      checkUniques(kind, key, uniques);
      const json = JSON.stringify(doc);
      const etag = etagOf(json);
      prep(`UPDATE ${kindOk(kind)} SET doc = ?, etag = ? WHERE key = ?`).run(json, etag, key);
      writeUniques(kind, key, uniques);
      return { key, doc, etag, json };
    }),
    remove: db.transaction((kind: Kind, key: string, opts: WriteOptions) => {
      current(kind, key, opts);
      prep(`DELETE FROM ${kindOk(kind)} WHERE key = ?`).run(key);
      prep('DELETE FROM uniq WHERE kind = ? AND key = ?').run(kind, key);
    }),
  };
}
