/**
 * claimLease on PostgreSQL (store.ts, LeaseClaim): one statement, atomic in autocommit, resolved after COMMIT.
 * The address is the primary key, so a new lease is an INSERT and two daemons inserting one address cannot both
 * succeed: the second waits for the first's row, then takes the DO UPDATE path, whose WHERE (the row ended, or it
 * is this client's) is evaluated on the committed row and is false (Kea's pgsql lease backend: INSERT on the
 * address, UPDATE of an expired lease only WHERE it is still that lease). One live row per client and subnet is the
 * deferred exclusion constraint of migration v3, so the loser of two daemons giving one client two addresses fails
 * at COMMIT; a winning live claim whose client has another live row fails there too, and goes again with the
 * release of that row in the same statement.
 */
import type pg from 'pg';
import { etagOf } from './batch.mjs';
import { clientKey, isLiveState, keeps } from './lease-claim.js';
import { type PgConn, type PgQuery, poolQuery } from './pg-conn.js';
import { jsonbCopy } from './pg-docs.js';
import { CLAIM_ROWS, ENDED, ETAG, LOST_CODES, pgClaimBatcher } from './pg-lease-batch.js';
import type { ClaimResult, Doc, LeaseClaim } from './store.js';

// $1 address, $2 body, $3 its JSONB copy (null: body), $4 etag, $5 now, $6 subnet, $7 client key, $8 clientId,
// $9 mac, $10 whether the claim is live (then the client's other live rows are released), $11 what they become
// (released by this claim's writer: its serverId replaces theirs, as lease-claim.ts `retired`), $12 its state (an
// offer neither replaces nor releases a lease in force, a reclaim no renewed lease: lease-claim.ts).
const CLAIM = `WITH claimed AS (
  INSERT INTO leases AS l (key, doc, body, etag) VALUES ($1, coalesce($3, $2)::jsonb, $2, $4)
  ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, body = excluded.body, etag = excluded.etag
  WHERE ${ENDED('$5')}
    OR ($12 <> 'expired' AND l.doc ->> 'state' <> 'declined' AND ($12 <> 'offered' OR l.doc ->> 'state' <> 'bound') AND CASE WHEN l.doc ->> 'clientId' IS NOT NULL AND $8::text IS NOT NULL
      THEN l.doc ->> 'clientId' = $8 ELSE l.doc ->> 'mac' = $9 END)
  RETURNING 1
), gone AS (
  SELECT key AS k, etag AS e, (doc - 'serverId') || $11::jsonb AS d FROM leases
  WHERE $10 AND EXISTS (SELECT 1 FROM claimed) AND key <> $1 AND doc ->> 'subnet' = $6
    AND coalesce(doc ->> 'clientId', doc ->> 'mac') = $7 AND doc ->> 'state' IN ('offered', 'bound')
    AND ($12 = 'bound' OR doc ->> 'expiresAt' <= $5)
), retired AS (
  UPDATE leases SET doc = gone.d, body = gone.d::text, etag = ${ETAG('gone.d::text')} FROM gone
  WHERE key = gone.k AND etag = gone.e
  RETURNING 1
)
SELECT (SELECT count(*) FROM claimed)::int AS won, (SELECT count(*) FROM retired)::int AS retired`;

/**
 * One claim alone on `query` (a batch of one on the batch's connection; the batch's fallback on the pool): the
 * claim without the release first, as
 * the batch's (pg-lease-batch.ts), then with it when the client has another offered or bound row. The release is
 * conditional on the etag it read: a row another daemon rewrote meanwhile (READ COMMITTED re-checks the WHERE on
 * the newer row) is left as it is, and the constraint decides.
 */
export function pgSingleClaim(query: PgQuery): (claim: LeaseClaim) => Promise<ClaimResult> {
  const holder = async (claim: LeaseClaim, byClient: boolean): Promise<Doc | undefined> => {
    const c = claim.doc;
    const r = byClient
      ? await query<{ body: string }>({
          text: `SELECT body FROM leases WHERE doc ->> 'subnet' = $1 AND coalesce(doc ->> 'clientId', doc ->> 'mac') = $2
            AND doc ->> 'state' IN ('offered', 'bound') LIMIT 1`,
          values: [c.subnet, clientKey(c)],
        })
      : await query<{ body: string }>({ text: 'SELECT body FROM leases WHERE key = $1', values: [c.address] });
    return r.rows[0] ? (JSON.parse(r.rows[0].body) as Doc) : undefined;
  };
  const lost = (err: unknown) => LOST_CODES.has((err as { code?: string }).code ?? '');
  // The claim, then the release of the client's other row if it has one (the claim's COMMIT failed on the
  // one-live-row constraint, nothing written): CLAIM, which also loses to another daemon's claim for the client.
  const withRelease = async (claim: LeaseClaim, body: string): Promise<ClaimResult> => {
    const c = claim.doc;
    const by = typeof c.serverId === 'string' ? { serverId: c.serverId } : {};
    const off = JSON.stringify({ state: 'released', expiresAt: claim.now, updatedAt: claim.now, ...by });
    try {
      const r = await query<{ won: number }>({
        name: 'plinth-claim-lease',
        text: CLAIM,
        values: [
          c.address,
          body,
          jsonbCopy(body),
          etagOf(body),
          claim.now,
          c.subnet,
          clientKey(c),
          c.clientId ?? null,
          c.mac,
          isLiveState(c.state),
          off,
          c.state,
        ],
      });
      if (r.rows[0]!.won === 1) return { ok: true };
      const held = await holder(claim, false);
      return keeps(held, claim) ? { ok: true } : { ok: false, holder: held };
    } catch (err) {
      if (!lost(err)) throw err;
      return { ok: false, holder: await holder(claim, true) };
    }
  };
  return async (claim) => {
    const c = claim.doc;
    const body = JSON.stringify(c);
    try {
      const r = await query<{ key: string }>({
        name: 'plinth-claim-rows',
        text: CLAIM_ROWS,
        values: [[c.address], [body], [jsonbCopy(body)], [etagOf(body)], claim.now],
      });
      if (r.rows.length === 0) {
        const held = await holder(claim, false);
        return keeps(held, claim) ? { ok: true } : { ok: false, holder: held };
      }
      return { ok: true };
    } catch (err) {
      if (!lost(err)) throw err;
    }
    return withRelease(claim, body);
  };
}

export type PgLeaseClaims = { claim(c: LeaseClaim): Promise<ClaimResult>; close(): Promise<void> };

/**
 * Batches in flight at once (pg-lease-batch.ts): durable claims on the main pool, offers on their own. One each:
 * in interleaved runs (bench/dhcp-pg-claims.ts, bench:dhcp's plinth-pg-par) four and three made more
 * transactions per DORA, PostgreSQL spent 15-75% more CPU per DORA (a durable COMMIT costs it about 340 µs here),
 * and the claims' p99 was no better: the wait behind a batch in flight is short next to what PostgreSQL's core does.
 */
export type ClaimsInFlight = { durable: number; offers: number };
export const CLAIMS_IN_FLIGHT: ClaimsInFlight = { durable: 1, offers: 1 };

/**
 * claimLease for the store: offers batched on a connection of their own that commits with synchronous_commit off
 * (`conns.offers`), every other claim on another (`conns.durable`), durable at COMMIT (pg-lease-batch.ts); a
 * batch's fallback runs its claims on `offers` (a pool with the offers' setting) or on `pool`.
 */
export function pgLeaseClaims(
  pool: pg.Pool,
  offers: pg.Pool,
  conns: { durable: () => PgConn; offers: () => PgConn },
  inFlight = CLAIMS_IN_FLIGHT,
): PgLeaseClaims {
  const durable = pgClaimBatcher(conns.durable, pgSingleClaim, pgSingleClaim(poolQuery(pool)), inFlight.durable);
  const offered = pgClaimBatcher(conns.offers, pgSingleClaim, pgSingleClaim(poolQuery(offers)), inFlight.offers);
  return {
    claim: (c) => (c.doc.state === 'offered' ? offered : durable).claim(c),
    close: async () => {
      await Promise.all([durable.close(), offered.close()]);
    },
  };
}
