/**
 * claimLease's group commit on PostgreSQL: the claims of one event-loop turn go in one statement (one round trip,
 * one COMMIT and WAL flush), as putBatched's writes do (pg-batch.ts), each claim resolved after that COMMIT. The
 * statement is pg-leases.ts's rule over arrays: per row, an INSERT on the address or a DO UPDATE whose WHERE is
 * the rule with the claim's values read from `excluded`. A winner whose client has another offered or bound row
 * fails the one-live-row constraint at COMMIT: the claims then go one by one, with that row's release.
 *
 * One claim per address and per client goes in a batch (a row cannot be upserted twice by one statement, and a
 * client's two claims would release each other); the others wait for the next. Several batches may be in flight
 * on separate connections, but an address or a client is in one of them at most, so a client's claims commit in
 * the order they were made. When the batch's COMMIT fails on the one-live-row constraint (two daemons claiming for
 * one client at once, or a client's other row to release), nothing of it was written and its claims are run one
 * by one, so only the claims that really lost, lose.
 */
import { etagOf } from './batch.mjs';
import { clientKey, keeps } from './lease-claim.js';
import type { PgConn, PgQuery } from './pg-conn.js';
import { jsonbCopy } from './pg-docs.js';
import { asStoreError, type ClaimResult, type Doc, type LeaseClaim } from './store.js';
import { type Queued, turnBatcher } from './turn-batcher.js';

/** etagOf (batch.mjs) in SQL, for rows a statement rewrites. */
export const ETAG = (t: string) =>
  `left(translate(encode(sha256(convert_to(${t}, 'UTF8')), 'base64'), '+/', '-_'), 22)`;

// The exclusion constraint at COMMIT (23P01), or a deadlock between two such COMMITs (40P01): this claim lost.
export const LOST_CODES = new Set(['23P01', '40P01', '23505']);

// $1 addresses, $2 bodies, $3 JSONB copies (null: the body), $4 etags, $5 the batch's earliest `now`. The claim
// only: a client's other offered or bound row, which a winning claim must release, fails the one-live-row
// constraint at COMMIT, and the claims go again alone with the release (pg-leases.ts). A client seldom has one
// (its row is the one it claims: the offer it REQUESTs, the lease it renews; a move releases the old row first),
// and without the release the statement costs PostgreSQL about a third less CPU.
/**
 * A lease row (`l`) any claim may take, whoever it was for: its time ran out by `now` (the SQL parameter named), or
 * it was given back or marked expired. pg-free.ts's free addresses are the ones without such a row's opposite.
 */
export const ENDED = (now: string) =>
  `(l.doc ->> 'expiresAt' <= ${now} OR l.doc ->> 'state' IN ('expired', 'released'))`;

export const CLAIM_ROWS = `INSERT INTO leases AS l (key, doc, body, etag)
  SELECT k, coalesce(j, b)::jsonb, b, e FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(k, b, j, e)
  ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, body = excluded.body, etag = excluded.etag
  WHERE ${ENDED('$5')}
    OR (excluded.doc ->> 'state' <> 'expired' AND l.doc ->> 'state' <> 'declined'
      AND (excluded.doc ->> 'state' <> 'offered' OR l.doc ->> 'state' <> 'bound')
      AND CASE WHEN l.doc ->> 'clientId' IS NOT NULL AND excluded.doc ->> 'clientId' IS NOT NULL
        THEN l.doc ->> 'clientId' = excluded.doc ->> 'clientId' ELSE l.doc ->> 'mac' = excluded.doc ->> 'mac' END)
  RETURNING key`;

type Pending = Queued<LeaseClaim, ClaimResult>;
export type ClaimBatcher = { claim(c: LeaseClaim): Promise<ClaimResult>; close(): Promise<void> };

/**
 * Timings a benchmark collects (bench/dhcp-pg-run.ts sets them on globalThis): per batch its size, the number of
 * batches in flight when it left, its round trip, and each claim's wait in the queue. Absent: nothing recorded.
 */
type ClaimStats = { sizes: number[]; waits: number[]; rtts: number[]; inFlight: number[] };
const stats = () =>
  (globalThis as Record<symbol, unknown>)[Symbol.for('plinth.store.claimStats')] as ClaimStats | undefined;

/** A connection the batcher holds (pg-conn.ts) and the single claim on it, for a batch of one. */
type Lane = { conn: PgConn; single: (c: LeaseClaim) => Promise<ClaimResult> };

/**
 * Batches claims, each batch on a connection of its own that the batcher holds (`connect` makes one: pg-conn.ts,
 * no pool checkout per batch), a batch of one as `singleOn` that connection's claim alone; `fallback` runs the
 * claims of a batch rolled back on the one-live-row constraint, one by one (pg-leases.ts, on the pool). Up to
 * `maxInFlight` batches run at once, each on its own connection: a claim that arrives while a batch waits for its
 * COMMIT may go in the next turn's batch instead of waiting for that COMMIT first. An address or a client is in at
 * most one batch in flight, and its claims go in the order they were made: a claim whose address or client is
 * busy waits, and so does every later claim for that address or client. The store uses one (CLAIMS_IN_FLIGHT,
 * pg-leases.ts): each extra transaction costs PostgreSQL a commit, and on the bench's shared core that cost more
 * than the wait saved. close() ends the connections once the batches are done.
 */
export function pgClaimBatcher(
  connect: () => PgConn,
  singleOn: (q: PgQuery) => (c: LeaseClaim) => Promise<ClaimResult>,
  fallback: (c: LeaseClaim) => Promise<ClaimResult>,
  maxInFlight = 1,
): ClaimBatcher {
  // The addresses and clients (subnet|client key) of the batches in flight.
  const busyAddresses = new Set<string>();
  const busyClients = new Set<string>();
  // Connections made so far, and those no batch runs on (at most maxInFlight: one per batch in flight).
  const lanes: Lane[] = [];
  const idle: Lane[] = [];
  const lane = () => {
    const l = idle.pop();
    if (l) return l;
    const conn = connect();
    const made = { conn, single: singleOn(conn.query) };
    lanes.push(made);
    return made;
  };

  const runBatch = async (batch: Pending[], { conn, single }: Lane) => {
    if (batch.length === 1) return settle(batch[0]!, single(batch[0]!.item));
    const bodies = batch.map((p) => JSON.stringify(p.item.doc));
    const now = batch.map((p) => p.item.now).sort()[0]!;
    let won: Set<string>;
    try {
      const r = await conn.query<{ key: string }>({
        name: 'plinth-claim-rows',
        text: CLAIM_ROWS,
        values: [batch.map((p) => p.item.doc.address), bodies, bodies.map(jsonbCopy), bodies.map(etagOf), now],
      });
      won = new Set(r.rows.map((x) => x.key));
    } catch (err) {
      // Not a lost race: each claim of the batch is rejected with it (turn-batcher.ts).
      if (!LOST_CODES.has((err as { code?: string }).code ?? '')) throw err;
      // Rolled back whole: each claim again, alone (with the release of the client's other row).
      await Promise.all(batch.map((p) => settle(p, fallback(p.item))));
      return;
    }
    const lost = batch.filter((p) => !won.has(p.item.doc.address));
    const held = new Map<string, Doc>();
    if (lost.length) {
      try {
        const r = await conn.query<{ key: string; body: string }>({
          text: 'SELECT key, body FROM leases WHERE key = ANY($1)',
          values: [lost.map((p) => p.item.doc.address)],
        });
        for (const x of r.rows) held.set(x.key, JSON.parse(x.body) as Doc);
      } catch {
        // The claims are decided; only their holders are not known.
      }
    }
    for (const p of batch) {
      if (won.has(p.item.doc.address)) p.resolve({ ok: true });
      else {
        const h = held.get(p.item.doc.address);
        p.resolve(keeps(h, p.item) ? { ok: true } : { ok: false, holder: h });
      }
    }
  };
  const settle = (p: Pending, r: Promise<ClaimResult>) => r.then(p.resolve, (e: unknown) => p.reject(asStoreError(e)));
  const clientOf = (p: Pending) => `${p.item.doc.subnet}|${clientKey(p.item.doc)}`;

  const claims = turnBatcher<LeaseClaim, ClaimResult>({
    maxInFlight,
    async run(batch, inFlight) {
      const st = stats();
      const t = performance.now();
      if (st) {
        st.sizes.push(batch.length);
        st.inFlight.push(inFlight);
        for (const p of batch) st.waits.push(t - p.at);
      }
      const l = lane();
      try {
        // A throw that is not a query's (each is handled there) rejects the claims not yet settled.
        await runBatch(batch, l);
      } finally {
        idle.push(l);
        st?.rtts.push(performance.now() - t);
      }
    },
    take(queue) {
      // Taken in this batch, or blocked by an earlier claim that waits: a later claim for either waits too.
      const addresses = new Set<string>();
      const clients = new Set<string>();
      const batch: Pending[] = [];
      const rest: Pending[] = [];
      for (const p of queue) {
        const a = p.item.doc.address;
        const who = clientOf(p);
        const free = !addresses.has(a) && !clients.has(who) && !busyAddresses.has(a) && !busyClients.has(who);
        (free ? batch : rest).push(p);
        addresses.add(a);
        clients.add(who);
      }
      for (const p of batch) {
        busyAddresses.add(p.item.doc.address);
        busyClients.add(clientOf(p));
      }
      return { batch, rest };
    },
    ended(batch) {
      for (const p of batch) {
        busyAddresses.delete(p.item.doc.address);
        busyClients.delete(clientOf(p));
      }
    },
  });
  return {
    claim: (claim) => claims.add(() => claim),
    async close() {
      await claims.close();
      await Promise.all(lanes.map((l) => l.conn.close()));
    },
  };
}
