/**
 * `freeLeaseAddresses` on PostgreSQL: the addresses of a range that a lease claim could take now (no row, or a row
 * that ended: pg-lease-batch.ts's ENDED, the first branch of every claim's rule), in the range's order from a given
 * address, wrapping. A daemon's lease index knows only what it loaded at start, wrote, or lost a claim to; in a pool
 * that other daemons filled, its next guesses are mostly their clients' addresses, one lost claim each
 * (bench/pg-pool-full.ts). One statement, an index probe per address passed over, stopping at `limit`.
 */
import type pg from 'pg';
import { ENDED } from './pg-lease-batch.js';
import type { FreeLeaseQuery } from './store.js';

const FREE = `SELECT r.a FROM (
    SELECT g, ((g >> 24) & 255) || '.' || ((g >> 16) & 255) || '.' || ((g >> 8) & 255) || '.' || (g & 255) AS a
    FROM (SELECT generate_series($3::bigint, $2::bigint) AS g UNION ALL SELECT generate_series($1::bigint, $3::bigint - 1)) s
  ) r
  WHERE NOT EXISTS (SELECT 1 FROM leases l WHERE l.key = r.a AND NOT ${ENDED('$4')})
  LIMIT $5`;

export function pgFreeLeaseAddresses(pool: pg.Pool): (q: FreeLeaseQuery) => Promise<string[]> {
  return async ({ start, end, from, now, limit }) => {
    const at = from < start || from > end ? start : from;
    const r = await pool.query<{ a: string }>({
      name: 'plinth-free-leases',
      text: FREE,
      values: [start, end, at, now, limit],
    });
    return r.rows.map((x) => x.a);
  };
}
