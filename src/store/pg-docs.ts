/**
 * The PostgreSQL store's statements on documents and their unique values, with SQLite's semantics
 * (sqlite-docs.ts): the same errors in the same order (not found, then If-Match, then a taken unique value), the
 * same list filters and sort order, etags of the JSON as written. Uniqueness is the database's: a value is
 * claimed by an upsert that locks its row, so two daemons racing for one MAC or name cannot both win.
 */
import type pg from 'pg';
import { etagOf } from './batch.mjs';
import { appendEvent } from './pg-events.js';
import {
  BackendError,
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

const fieldRe = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The kind as a table name: only the known ones ever reach SQL text. */
export function kindOk(kind: Kind): Kind {
  if (!(KINDS as readonly string[]).includes(kind)) throw new StoreError(`unknown kind ${kind}`);
  return kind;
}

/**
 * The JSON for the JSONB column. JSONB refuses two things JSON.stringify can write: `\u0000` and a lone
 * surrogate's escape. `body` keeps them as written (reads and etags use it); the queryable copy gets U+FFFD
 * instead, and so do filter values (jsonParam), so a filter still finds what it would find in SQLite. Returns
 * null when the JSON is fine as it is (almost always), so the SQL falls back to `body`.
 */
export function jsonbCopy(json: string): string | null {
  if (!json.includes('\\u')) return null;
  const fixed = json.replace(/\\u(0000|d[89a-f][0-9a-f]{2})/g, '\\ufffd');
  return fixed === json ? null : fixed;
}
const jsonParam = (v: unknown) => {
  const json = JSON.stringify(v);
  return jsonbCopy(json) ?? json;
};

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

// PostgreSQL text holds no NUL: such a key or value cannot be stored, so it exists nowhere.
const hasNul = (s: string) => s.includes('\0');

/** A row as it is read: the JSON as written, parsed only when someone reads `doc`. */
export function stored(key: string, json: string, etag: string): Stored {
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

/**
 * The sort of SQLite's `ORDER BY json_extract(doc, '$.f')`: missing and null first, then numbers and booleans by
 * value (SQLite reads true as 1), then strings (and JSON objects/arrays, as text) byte by byte; ties by key.
 */
function sortClause(field: string, desc: boolean): string {
  const x = `doc -> '${field}'`;
  const dir = desc ? 'DESC' : 'ASC';
  const rank = `CASE jsonb_typeof(${x}) WHEN 'number' THEN 1 WHEN 'boolean' THEN 1 WHEN 'string' THEN 2 WHEN 'object' THEN 2 WHEN 'array' THEN 2 ELSE 0 END`;
  const num = `CASE jsonb_typeof(${x}) WHEN 'number' THEN (${x})::numeric WHEN 'boolean' THEN (CASE WHEN ${x} = 'true' THEN 1 ELSE 0 END) END`;
  const text = `(doc ->> '${field}') COLLATE "C"`;
  return ` ORDER BY ${rank} ${dir}, ${num} ${dir}, ${text} ${dir}, key`;
}

/** `WHERE ...` and `ORDER BY ...` of a list query and its arguments; field names are checked, values bound. */
export function pgListClauses(q: ListQuery): { where: string; order: string; args: unknown[] } {
  const where: string[] = [];
  const args: unknown[] = [];
  for (const f of q.filters ?? []) {
    if (!fieldRe.test(f.field)) throw new StoreError(`bad filter field ${f.field}`);
    if (f.array) {
      // `@>` on an array: it holds the value; on a scalar: it is the value. That is SQLite's json_each, which
      // walks an array's members or yields a scalar itself. A null member never equals anything there.
      if (f.value === null) where.push('false');
      else {
        args.push(jsonParam(f.value));
        where.push(`doc -> '${f.field}' @> $${args.length}::jsonb`);
      }
    } else if (f.value === null) {
      where.push(`doc ->> '${f.field}' IS NULL`);
    } else {
      args.push(jsonParam(f.value));
      where.push(`doc -> '${f.field}' = $${args.length}::jsonb`);
    }
  }
  let order = ' ORDER BY key';
  if (q.sort) {
    if (!fieldRe.test(q.sort.field)) throw new StoreError(`bad sort field ${q.sort.field}`);
    order = sortClause(q.sort.field, Boolean(q.sort.desc));
  }
  return { where: where.length ? ` WHERE ${where.join(' AND ')}` : '', order, args };
}

type Query = pg.Pool | pg.PoolClient;

/**
 * The unique values without repeats (a repeat would make the claiming upsert touch a row twice). The claim sorts
 * them: two transactions claiming the same values then lock their rows in one order and cannot deadlock.
 */
function distinct(uniques: UniqueValue[]): UniqueValue[] {
  const seen = new Set<string>();
  return uniques.filter((u) => {
    const id = `${u.field}\0${u.value}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

/**
 * Gives `key` exactly these unique values: claims each (an upsert that inserts it or locks the existing row and
 * returns its owner), throws ConflictError for the first one another key owns, and releases the ones it no
 * longer has. Runs inside the caller's transaction, which the throw rolls back.
 */
async function claimUniques(c: pg.PoolClient, kind: Kind, key: string, uniques: UniqueValue[]): Promise<void> {
  const list = distinct(uniques);
  for (const u of list) if (hasNul(u.value)) throw new BackendError(`${u.field} holds a NUL character`);
  const ordered = [...list].sort((a, b) => (a.field === b.field ? cmp(a.value, b.value) : cmp(a.field, b.field)));
  const fields = ordered.map((u) => u.field);
  const values = ordered.map((u) => u.value);
  await c.query({
    name: 'plinth-uniq-release',
    text: `DELETE FROM uniq d WHERE d.kind = $1 AND d.key = $2 AND NOT EXISTS
      (SELECT 1 FROM unnest($3::text[], $4::text[]) AS u(f, v) WHERE u.f = d.field AND u.v = d.value)`,
    values: [kind, key, fields, values],
  });
  if (list.length === 0) return;
  const r = await c.query<{ field: string; value: string; key: string }>({
    name: 'plinth-uniq-claim',
    text: `INSERT INTO uniq (kind, field, value, key) SELECT $1, f, v, $2 FROM unnest($3::text[], $4::text[]) AS u(f, v)
      ON CONFLICT (kind, field, value) DO UPDATE SET key = uniq.key RETURNING field, value, key`,
    values: [kind, key, fields, values],
  });
  const owners = new Map(r.rows.map((row) => [`${row.field}\0${row.value}`, row.key]));
  for (const u of list) {
    const owner = owners.get(`${u.field}\0${u.value}`);
    if (owner !== undefined && owner !== key) throw new ConflictError(kind, u.field, u.value, owner);
  }
}

// Deadlock detected, serialization failure: the server rolled the transaction back; running it again is safe.
const RETRY = new Set(['40P01', '40001']);

/**
 * Runs `fn` in one transaction on one pooled connection, again (at most twice more) when the server aborted it
 * for a deadlock or a serialization failure; a connection that failed is not returned to the pool.
 */
export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>, tries = 3): Promise<T> {
  try {
    return await once(pool, fn);
  } catch (err) {
    if (tries > 1 && RETRY.has((err as { code?: string }).code ?? '')) return inTransaction(pool, fn, tries - 1);
    throw err;
  }
}

/** `fn` in one transaction on a connection of its own: committed when it resolves, rolled back when it throws. */
export async function once<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  let broken: Error | undefined;
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (err) {
    await c.query('ROLLBACK').catch((e: Error) => {
      broken = e;
    });
    throw err;
  } finally {
    c.release(broken);
  }
}

/** Who writes (recorded with each event) and where its events ring (pg-events.ts). */
export type EventTarget = { serverId: string; channel: string };

export function pgDocStatements(pool: pg.Pool, target: EventTarget) {
  const event = (c: pg.PoolClient, opts: WriteOptions) =>
    opts.event ? appendEvent(c, target.serverId, target.channel, opts.event) : undefined;
  const getRow = async (q: Query, kind: Kind, key: string) => {
    if (hasNul(key)) return undefined;
    const r = await q.query<{ body: string; etag: string }>({
      name: `plinth-get-${kindOk(kind)}`,
      text: `SELECT body, etag FROM ${kind} WHERE key = $1`,
      values: [key],
    });
    return r.rows[0];
  };
  // Not found, or found with another etag: the same checks, in the same order, as SQLite's.
  const notWritten = async (c: pg.PoolClient, kind: Kind, key: string): Promise<never> => {
    if (await getRow(c, kind, key)) throw new PreconditionError(kind, key);
    throw new NotFoundError(kind, key);
  };
  const row = (key: string, doc: Doc) => {
    const json = JSON.stringify(doc);
    return { json, values: [key, jsonbCopy(json), json, etagOf(json)] };
  };

  return {
    async get(kind: Kind, key: string): Promise<Stored | undefined> {
      const r = await getRow(pool, kind, key);
      return r ? stored(key, r.body, r.etag) : undefined;
    },
    async getMany(kind: Kind, keys: readonly string[]): Promise<Stored[]> {
      const r = await pool.query<[string, string, string]>({
        name: `plinth-get-many-${kindOk(kind)}`,
        text: `SELECT key, body, etag FROM ${kind} WHERE key = ANY($1::text[]) ORDER BY key`,
        values: [keys.filter((k) => !hasNul(k))],
        rowMode: 'array',
      });
      return r.rows.map((x) => stored(x[0], x[1], x[2]));
    },
    async list(kind: Kind, q: ListQuery): Promise<{ items: Stored[]; total: number }> {
      const { where, order, args } = pgListClauses(q);
      const n = args.length;
      const offset = q.offset ?? 0;
      const rows = pool.query<[string, string, string]>({
        text: `SELECT key, body, etag FROM ${kindOk(kind)}${where}${order} LIMIT $${n + 1} OFFSET $${n + 2}`,
        values: [...args, q.limit ?? null, offset],
        rowMode: 'array',
      });
      const counted =
        q.limit === undefined && offset === 0
          ? undefined
          : pool.query<{ n: number }>({ text: `SELECT count(*)::int AS n FROM ${kind}${where}`, values: args });
      const [r, c] = await Promise.all([rows, counted]);
      return { items: r.rows.map((x) => stored(x[0], x[1], x[2])), total: c ? c.rows[0]!.n : r.rows.length };
    },
    async keyOf(kind: Kind, field: string, value: string): Promise<string | undefined> {
      if (hasNul(value) || hasNul(field)) return undefined;
      const r = await pool.query<{ key: string }>({
        name: 'plinth-keyof',
        text: 'SELECT key FROM uniq WHERE kind = $1 AND field = $2 AND value = $3',
        values: [kindOk(kind), field, value],
      });
      return r.rows[0]?.key;
    },
    create: (kind: Kind, key: string, doc: Doc, uniques: UniqueValue[], opts: WriteOptions): Promise<Stored> => {
      if (hasNul(key)) return Promise.reject(new BackendError('a key cannot hold a NUL character'));
      return inTransaction(pool, async (c) => {
        const { json, values } = row(key, doc);
        const r = await c.query({
          name: `plinth-create-${kindOk(kind)}`,
          text: `INSERT INTO ${kind} (key, doc, body, etag) VALUES ($1, coalesce($2, $3)::jsonb, $3, $4)
            ON CONFLICT (key) DO NOTHING`,
          values,
        });
        if (r.rowCount === 0) throw new ConflictError(kind, 'key', key, key);
        await claimUniques(c, kind, key, uniques);
        await event(c, opts);
        return { key, doc, etag: values[3] as string, json };
      });
    },
    replace: (kind: Kind, key: string, doc: Doc, uniques: UniqueValue[], opts: WriteOptions): Promise<Stored> => {
      if (hasNul(key)) return Promise.reject(new NotFoundError(kind, key));
      return inTransaction(pool, async (c) => {
        const { json, values } = row(key, doc);
        const r = await c.query({
          name: `plinth-replace-${kindOk(kind)}`,
          text: `UPDATE ${kind} SET doc = coalesce($2, $3)::jsonb, body = $3, etag = $4
            WHERE key = $1 AND ($5::text IS NULL OR etag = $5)`,
          values: [...values, opts.ifMatch ?? null],
        });
        if (r.rowCount === 0) await notWritten(c, kind, key);
        await claimUniques(c, kind, key, uniques);
        await event(c, opts);
        return { key, doc, etag: values[3] as string, json };
      });
    },
    // One statement, so one transaction without BEGIN/COMMIT round trips (two more with an event to append).
    // A row changed meanwhile by another daemon is re-checked against If-Match after its lock is released
    // (READ COMMITTED), so it is not removed.
    async remove(kind: Kind, key: string, opts: WriteOptions): Promise<void> {
      if (hasNul(key)) throw new NotFoundError(kind, key);
      const run = async (q: Query) => {
        const r = await q.query<{ etag: string | null; n: number }>({
          name: `plinth-remove-${kindOk(kind)}`,
          text: `WITH cur AS (SELECT etag FROM ${kind} WHERE key = $1),
            d AS (DELETE FROM ${kind} WHERE key = $1 AND ($2::text IS NULL OR etag = $2) RETURNING key),
            u AS (DELETE FROM uniq WHERE kind = $3 AND key IN (SELECT key FROM d))
            SELECT (SELECT etag FROM cur) AS etag, (SELECT count(*)::int FROM d) AS n`,
          values: [key, opts.ifMatch ?? null, kind],
        });
        const { etag, n } = r.rows[0]!;
        if (n > 0) return;
        if (etag === null) throw new NotFoundError(kind, key);
        throw new PreconditionError(kind, key);
      };
      if (!opts.event) return run(pool);
      return inTransaction(pool, async (c) => {
        await run(c);
        await event(c, opts);
      });
    },
  };
}
