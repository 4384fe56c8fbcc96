/**
 * The leader's sweep of the lease table (`Store.expireLeases`, issue 17): offered and bound leases whose time ran
 * out become `expired`. Each DHCP daemon reclaims the leases it holds in memory; a lease another daemon wrote
 * after this one loaded its index, and whose writer then died, is in no live daemon's memory and would read
 * `bound` for ever. The write is conditional on the row being the one read (its etag) and still ended, so a
 * lease a client renewed meanwhile through any daemon is never touched.
 */
import type Database from 'better-sqlite3';
import type pg from 'pg';
import { etagOf } from './batch.mjs';
import { jsonbCopy } from './pg-docs.js';

const LIVE = "('offered', 'bound')";

/** The lease's JSON marked expired (the rest exactly as stored). */
export function expiredJson(json: string, now: string): string {
  return JSON.stringify({ ...(JSON.parse(json) as object), state: 'expired', updatedAt: now });
}

export function pgExpireLeases(pool: pg.Pool) {
  return async (before: string, limit = 1000): Promise<string[]> => {
    const r = await pool.query<{ key: string; body: string; etag: string }>(
      `SELECT key, body, etag FROM leases WHERE doc ->> 'state' IN ${LIVE} AND doc ->> 'expiresAt' < $1
        ORDER BY key LIMIT $2`,
      [before, limit],
    );
    if (!r.rows.length) return [];
    const now = new Date().toISOString();
    const bodies = r.rows.map((x) => expiredJson(x.body, now));
    const u = await pool.query<{ key: string }>(
      `UPDATE leases l SET doc = coalesce(u.j, u.b)::jsonb, body = u.b, etag = u.e
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(k, old, b, j, e)
        WHERE l.key = u.k AND l.etag = u.old AND l.doc ->> 'state' IN ${LIVE} AND l.doc ->> 'expiresAt' < $6
        RETURNING l.key`,
      [
        r.rows.map((x) => x.key),
        r.rows.map((x) => x.etag),
        bodies,
        bodies.map((b) => jsonbCopy(b)),
        bodies.map((b) => etagOf(b)),
        before,
      ],
    );
    return u.rows.map((x) => x.key).sort();
  };
}

export function sqliteExpireLeases(db: Database.Database) {
  const select = db.prepare<[string, number], { key: string; doc: string }>(
    `SELECT key, doc FROM leases WHERE json_extract(doc, '$.state') IN ${LIVE}
      AND json_extract(doc, '$.expiresAt') < ? ORDER BY key LIMIT ?`,
  );
  const update = db.prepare('UPDATE leases SET doc = ?, etag = ? WHERE key = ?');
  // IMMEDIATE: read and write under the write lock, so the writer thread's renewal lands before or after, whole.
  const run = db.transaction((before: string, limit: number) => {
    const now = new Date().toISOString();
    const keys: string[] = [];
    for (const row of select.all(before, limit)) {
      const json = expiredJson(row.doc, now);
      update.run(json, etagOf(json), row.key);
      keys.push(row.key);
    }
    return keys;
  });
  return (before: string, limit = 1000): string[] => run.immediate(before, limit);
}
