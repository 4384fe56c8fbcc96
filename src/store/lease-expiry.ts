/**
 * The leader's sweep of the lease table (`Store.expireLeases`, issue 17): offered and bound leases whose time ran
 * out become `expired`. On a shared table it is their one writer: each daemon's reclaim pass marks them in its own
 * memory only (src/dhcp/leases.ts), so an ended lease is written once, and its `lease.expired` appended to the event
 * log once, in the same transaction, whichever daemons held it. The write is conditional on the row being the one
 * read (its etag) and still ended, so a lease a client renewed meanwhile through any daemon is never touched.
 */
import type Database from 'better-sqlite3';
import type pg from 'pg';
import { etagOf } from './batch.mjs';
import { jsonbCopy, once } from './pg-docs.js';
import { appendEvents } from './pg-events.js';
import type { ExpiredLease, ExpireOptions } from './store.js';

const LIVE = "('offered', 'bound')";

/**
 * The lease's JSON marked expired by the sweeping daemon `serverId` (the rest exactly as stored). Without one (SQLite,
 * whose daemon never sweeps) the mark drops the previous writer's: a daemon's catch-up read leaves out the rows
 * naming it (pg-lease-changes.ts), so a row another writer changed must never keep its name.
 */
export function expiredJson(json: string, now: string, serverId?: string): string {
  return JSON.stringify({ ...(JSON.parse(json) as object), state: 'expired', updatedAt: now, serverId });
}

type Fields = { mac?: unknown; subnet?: unknown; state?: unknown; serverId?: unknown };
/** The lease as the sweep read it, before its mark (which names the sweeper): `serverId` is its writer's. */
const expired = (key: string, doc: Fields): ExpiredLease => ({
  key,
  mac: String(doc.mac ?? ''),
  subnet: String(doc.subnet ?? ''),
  ...(typeof doc.serverId === 'string' ? { serverId: doc.serverId } : {}),
  was: doc.state === 'offered' ? 'offered' : 'bound',
});
const byKey = (a: ExpiredLease, b: ExpiredLease) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * The sweep's read: live leases ended before $1, the longest ended first, at most $2. The predicate is the partial
 * index's (pg-migrations.ts v6), so PostgreSQL reads only the ended rows in the index's order and stops at the
 * LIMIT, however many live leases the table holds.
 */
export const PG_SWEEP_READ = `SELECT key, body, etag FROM leases WHERE doc ->> 'state' IN ${LIVE} AND doc ->> 'expiresAt' < $1
  ORDER BY doc ->> 'expiresAt', key LIMIT $2`;

/**
 * `serverId`: the sweeping daemon's, recorded in each lease it marks and with the events it appends; `channel`: the
 * event log's (pg-events.ts), for the events the caller asks for.
 */
export function pgExpireLeases(pool: pg.Pool, serverId: string, channel: string) {
  return async (before: string, o: ExpireOptions = {}): Promise<ExpiredLease[]> => {
    const r = await pool.query<{ key: string; body: string; etag: string }>(PG_SWEEP_READ, [before, o.limit ?? 1000]);
    if (!r.rows.length) return [];
    const now = new Date().toISOString();
    const bodies = r.rows.map((x) => expiredJson(x.body, now, serverId));
    // The marks and their events commit together: a subscriber hears of exactly the leases marked.
    return once(pool, async (c) => {
      const u = await c.query<{ key: string }>(
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
      // Each as read (its state and writer): the UPDATE wrote only rows still at the etag read.
      const read = new Map(r.rows.map((x) => [x.key, JSON.parse(x.body) as Fields]));
      const marked = u.rows.map((x) => expired(x.key, read.get(x.key)!)).sort(byKey);
      const event = o.event;
      if (event)
        await appendEvents(
          c,
          serverId,
          channel,
          marked.flatMap((l) => event(l) ?? []),
        );
      return marked;
    });
  };
}

/** SQLite has no event log (its one daemon's bus is the log): `o.event` is not used. */
export function sqliteExpireLeases(db: Database.Database) {
  const select = db.prepare<[string, number], { key: string; doc: string }>(
    `SELECT key, doc FROM leases WHERE json_extract(doc, '$.state') IN ${LIVE}
      AND json_extract(doc, '$.expiresAt') < ? ORDER BY key LIMIT ?`,
  );
  const update = db.prepare('UPDATE leases SET doc = ?, etag = ? WHERE key = ?');
  // IMMEDIATE: read and write under the write lock, so the writer thread's renewal lands before or after, whole.
  const run = db.transaction((before: string, limit: number) => {
    const now = new Date().toISOString();
    const marked: ExpiredLease[] = [];
    for (const row of select.all(before, limit)) {
      const json = expiredJson(row.doc, now);
      update.run(json, etagOf(json), row.key);
      marked.push(expired(row.key, JSON.parse(row.doc) as Fields));
    }
    return marked;
  });
  return (before: string, o: ExpireOptions = {}): ExpiredLease[] => run.immediate(before, o.limit ?? 1000);
}
