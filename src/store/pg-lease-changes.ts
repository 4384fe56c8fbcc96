/**
 * `Store.leaseChanges` on PostgreSQL (issue 17): the lease rows other daemons committed since a daemon last
 * looked, so its in-memory index follows them within its polling interval. Lease writes come at packet rate, so
 * they append no event (one advisory lock per event-writing transaction would serialise every claim); instead each
 * row carries the id of the transaction that last wrote it (`tx`, set by a trigger, migration v4), and a cursor is
 * a snapshot: the rows whose writer was not visible in the caller's last snapshot but is in this one are exactly
 * those committed in between, in whatever order their transactions began or committed (a sequence or a
 * timestamp would skip a row whose transaction began before and committed after a read). The index on (tx, key)
 * (migration v5) keeps an empty poll to a few index pages.
 *
 * Paged: after an outage, a restore or a long pause the rows in between may be the whole table (100k+), which one
 * statement would return, and Node parse, in one go on the event loop. A pass from snapshot `from` takes its
 * target snapshot `to` with its first page and returns the rows written between them `pageSize` at a time, by
 * (tx, key) after the last row returned. A row rewritten after `to` has a writer `to` does not see: it drops out
 * of this pass (each row once per pass, the pages' order stable) and comes in the next, as it is then. The pass
 * ends with a short page; the cursor is then `to`, the next pass's `from`. A page's bodies are parsed PARSE_SLICE
 * at a time, with a turn of the event loop between slices (a page in one turn held the DHCP packets behind it).
 *
 * Given this daemon's serverId, the rows that name it as their last writer are left out in SQL: its own claims
 * taught its index already (won: its lease; lost: the holder's, another daemon's row), so PostgreSQL need not send
 * them nor Node parse them. Every writer of a lease row puts its own serverId there or none (the DHCP server's
 * leases, a claim's release of the client's other row, the leader's sweep), so a row another daemon rewrote is
 * always returned, and so is a row naming no daemon (written before leases recorded it, or by a tool without one).
 * The rows this daemon's own sweep marked expired are left out too: its index marks ended leases itself (the
 * reclaim pass, src/dhcp/leases.ts), as the sweep does, by their expiresAt.
 */
// A turn of the event loop: setImmediate runs after the poll phase, so the packets that arrived meanwhile go first.
import { setImmediate as nextTurn } from 'node:timers/promises';
import type pg from 'pg';
import { type LeaseChanges, StoreError } from './store.js';

export const LEASE_PAGE_SIZE = 5000;

/**
 * Bodies JSON-parsed per turn of the event loop: a page of 5,000 took 3-28 ms in one turn (this 2-core VM), which
 * the DHCP packets queued behind it waited; 500 take at most about 3, as long as a slice the index learns.
 */
export const PARSE_SLICE = 500;

/**
 * A cursor in the middle of a pass (a cursor between passes is a snapshot's text): from `from` to `to`, after the
 * row (tx, key). Without `from`: every row, by key after `key` (the `behind` case below), then on from `to`.
 */
type InPass = { from?: string; to: string; tx?: string; key?: string };

// pg_current_snapshot() is the statement's snapshot (READ COMMITTED: one per statement), the one the rows are
// read with, so a first page's target covers exactly what it read.
const NOW = 'SELECT pg_current_snapshot()::text AS snap';
// `behind`: this cluster's transaction ids are below the cursor's (xid8 never goes back within a cluster: the
// database was restored into another one, or replaced), so the cursor means nothing here and every row is read.
// The rows are ordered again outside the join (one Sort of at most a page; a nested loop keeps its outer side's
// order only), since the last one is where the next page starts.
const FIRST = (n: number, others: string) => `WITH s AS (SELECT pg_current_snapshot() AS snap)
  SELECT s.snap::text AS target, pg_snapshot_xmax(s.snap) < pg_snapshot_xmax($1::pg_snapshot) AS behind,
    l.key, l.tx::text AS tx, l.body
  FROM s LEFT JOIN (SELECT key, tx, body FROM leases
    WHERE tx >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(tx, $1::pg_snapshot)${others}
    ORDER BY tx, key LIMIT ${n}) l ON true
  ORDER BY l.tx, l.key`;
// A later page of the pass: $1 from, $2 to, after ($3 tx, $4 key). Read with a newer snapshot than `to`, so a row
// whose writer `to` does not see is left for the next pass: below its xmax, that is a transaction in its xip list
// (`<> ALL`, which the planner counts as keeping nearly every row; as pg_visible_in_snapshot, a function it knows
// nothing of, it guessed a third, found too few rows for the LIMIT to stop a scan early, and read and sorted the
// whole rest of the pass by seq or bitmap scan instead of the (tx, key) range scan). Behind `to`: the cluster
// changed during the pass.
const NEXT = (n: number, others: string) => `SELECT
    pg_snapshot_xmax(pg_current_snapshot()) < pg_snapshot_xmax($2::pg_snapshot) AS behind, l.key, l.tx::text AS tx, l.body
  FROM (SELECT 1) s LEFT JOIN (SELECT key, tx, body FROM leases
    WHERE (tx, key) > ($3::xid8, $4::text) AND tx < pg_snapshot_xmax($2::pg_snapshot)
      AND tx <> ALL (ARRAY(SELECT pg_snapshot_xip($2::pg_snapshot)))
      AND NOT pg_visible_in_snapshot(tx, $1::pg_snapshot)${others}
    ORDER BY tx, key LIMIT ${n}) l ON true
  ORDER BY l.tx, l.key`;
// IS DISTINCT FROM: a row without a serverId (NULL) is returned. The last parameter.
const OTHERS = (p: number) => ` AND doc ->> 'serverId' IS DISTINCT FROM $${p}::text`;
// Every row (this daemon's own too: the index compares and skips what it has), by key, when the cursor is behind.
const ALL = (n: number) => `SELECT key, body FROM leases ORDER BY key LIMIT ${n}`;
const ALL_AFTER = (n: number) => `SELECT key, body FROM leases WHERE key > $1::text ORDER BY key LIMIT ${n}`;

type Row = { key: string | null; tx?: string | null; body: string | null };

function parseCursor(cursor: string): string | InPass {
  if (!cursor.startsWith('{')) return cursor;
  const c = JSON.parse(cursor) as InPass;
  if (typeof c.to !== 'string') throw new StoreError(`bad lease changes cursor ${cursor.slice(0, 80)}`);
  return c;
}

/** `serverId`: this daemon's, whose own rows are left out (none: every row is returned); `pageSize`: rows a call. */
export function pgLeaseChanges(pool: pg.Pool, serverId?: string, pageSize = LEASE_PAGE_SIZE) {
  // In the statements' text (a LIMIT the planner sees, not a parameter it must guess); checked at open (pg.ts).
  const n = pageSize;
  const mine = serverId === undefined ? [] : [serverId];
  const first = {
    name: `plinth-lease-changes-${serverId === undefined ? 'all' : 'others'}-${n}`,
    text: FIRST(n, mine.length ? OTHERS(2) : ''),
  };
  // Unnamed, so planned with its values each time (a page of a long pass, not a poll): a named statement's generic
  // plan cannot tell how many rows follow (tx, key) and reads them all by bitmap to sort them (50k rows, a page
  // from the start: 27 ms, against 5 for the range scan of the (tx, key) index the values let the planner choose).
  const next = NEXT(n, mine.length ? OTHERS(5) : '');

  /** A page's rows as the call's result (parsed a slice per turn): `more` when it was full, the cursor after its last. */
  const page = async (rows: Row[], after: (last: Row) => InPass, to: string): Promise<LeaseChanges> => {
    const docs = [];
    let last: Row | undefined;
    for (let i = 0; i < rows.length; i++) {
      if (i > 0 && i % PARSE_SLICE === 0) await nextTurn();
      const row = rows[i]!;
      if (row.body === null) continue;
      docs.push(JSON.parse(row.body) as Record<string, unknown>);
      last = row;
    }
    if (docs.length < n || last === undefined) return { cursor: to, docs, more: false };
    return { cursor: JSON.stringify(after(last)), docs, more: true };
  };

  const everyRow = async (to: string, key?: string): Promise<LeaseChanges> => {
    const r =
      key === undefined
        ? await pool.query<Row>({ name: `plinth-lease-all-${n}`, text: ALL(n) })
        : await pool.query<Row>({ name: `plinth-lease-all-after-${n}`, text: ALL_AFTER(n), values: [key] });
    return page(r.rows, (last) => ({ to, key: last.key! }), to);
  };

  const firstPage = async (from: string): Promise<LeaseChanges> => {
    const r = await pool.query<Row & { target: string; behind: boolean }>({ ...first, values: [from, ...mine] });
    const to = r.rows[0]!.target;
    if (r.rows[0]!.behind) return everyRow(to);
    return page(r.rows, (last) => ({ from, to, tx: last.tx!, key: last.key! }), to);
  };

  return async (cursor?: string): Promise<LeaseChanges> => {
    if (cursor === undefined) {
      const r = await pool.query<{ snap: string }>(NOW);
      return { cursor: r.rows[0]!.snap, docs: [], more: false };
    }
    const c = parseCursor(cursor);
    if (typeof c === 'string') return firstPage(c);
    if (c.from === undefined) return everyRow(c.to, c.key);
    const { from, to } = c;
    const r = await pool.query<Row & { behind: boolean }>(next, [from, to, c.tx, c.key, ...mine]);
    // The cluster is behind the pass's target: a first page from it finds so, and reads every row.
    if (r.rows[0]!.behind) return firstPage(to);
    return page(r.rows, (last) => ({ from, to, tx: last.tx!, key: last.key! }), to);
  };
}
