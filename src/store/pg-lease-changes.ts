/**
 * `Store.leaseChanges` on PostgreSQL (issue 17): the lease rows other daemons committed since a daemon last
 * looked, so its in-memory index follows them within its polling interval. Lease writes come at packet rate, so
 * they append no event (one advisory lock per event-writing transaction would serialise every claim); instead each
 * row carries the id of the transaction that last wrote it (`tx`, set by a trigger, migration v4), and a cursor is
 * a snapshot: the rows whose writer was not visible in the caller's last snapshot but is in this one are exactly
 * those committed in between, in whatever order their transactions began or committed (a sequence or a
 * timestamp would skip a row whose transaction began before and committed after a read). The index on `tx`
 * keeps an empty poll to a few index pages.
 *
 * Given this daemon's serverId, the rows that name it as their last writer are left out in SQL: its own claims
 * taught its index already (won: its lease; lost: the holder's, another daemon's row), so PostgreSQL need not send
 * them nor Node parse them. Every writer of a lease row puts its own serverId there or none (the DHCP server's
 * leases, a claim's release of the client's other row, the leader's sweep), so a row another daemon rewrote is
 * always returned, and so is a row naming no daemon (written before leases recorded it, or by a tool without one).
 * The rows this daemon's own sweep marked expired are left out too: its index marks ended leases itself (the
 * reclaim pass, src/dhcp/leases.ts), as the sweep does, by their expiresAt.
 */
import type pg from 'pg';
import type { LeaseChanges } from './store.js';

// pg_current_snapshot() is the statement's snapshot (READ COMMITTED: one per statement), the one the rows are
// read with, so the cursor returned covers exactly what was read. Without a cursor: only the snapshot.
const NOW = 'SELECT pg_current_snapshot()::text AS snap';
// `behind`: this cluster's transaction ids are below the cursor's (xid8 never goes back within a cluster: the
// database was restored into another one, or replaced), so the cursor means nothing here and every row is read.
const SINCE = `WITH s AS (SELECT pg_current_snapshot() AS snap)
  SELECT s.snap::text AS snap, pg_snapshot_xmax(s.snap) < pg_snapshot_xmax($1::pg_snapshot) AS behind, l.body
  FROM s LEFT JOIN leases l
    ON l.tx >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(l.tx, $1::pg_snapshot)`;
// IS DISTINCT FROM: a row without a serverId (NULL) is returned.
const SINCE_OTHERS = `${SINCE} AND l.doc ->> 'serverId' IS DISTINCT FROM $2::text`;
// Every row (this daemon's own too: the index compares and skips what it has), when the cursor is `behind`.
const ALL = `WITH s AS (SELECT pg_current_snapshot() AS snap)
  SELECT s.snap::text AS snap, l.body FROM s LEFT JOIN leases l ON true`;

/** `serverId`: this daemon's, whose own rows are left out (none: every row is returned). */
export function pgLeaseChanges(pool: pg.Pool, serverId?: string) {
  const query =
    serverId === undefined
      ? (cursor: string) => ({ name: 'plinth-lease-changes', text: SINCE, values: [cursor] })
      : (cursor: string) => ({ name: 'plinth-lease-changes-others', text: SINCE_OTHERS, values: [cursor, serverId] });
  return async (cursor?: string): Promise<LeaseChanges> => {
    if (cursor === undefined) {
      const r = await pool.query<{ snap: string }>(NOW);
      return { cursor: r.rows[0]!.snap, docs: [] };
    }
    let r = await pool.query<{ snap: string; behind?: boolean; body: string | null }>(query(cursor));
    if (r.rows[0]?.behind) r = await pool.query(ALL);
    const docs = [];
    for (const row of r.rows) if (row.body !== null) docs.push(JSON.parse(row.body) as Record<string, unknown>);
    return { cursor: r.rows[0]?.snap ?? cursor, docs };
  };
}
