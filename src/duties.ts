/**
 * The daemon's singleton duties (issue 17), each run by the leading daemon only (src/leader.ts) and moved to
 * another when it dies: the sweep of expired machine tokens, the sweep of ended leases in a shared lease table
 * (with their `lease.expired` events), and the event log's retention. The rollout driver is the fleet's
 * (src/fleet/index.ts).
 */
import { expiredEvent } from './dhcp/lease-events.js';
import type { Bus } from './events.js';
import { pruneExpiredTokens } from './inventory/tokens.js';
import { every, type Leadership, whileLeading } from './leader.js';
import type { Logger } from './log.js';
import { loggedEvent } from './peer-events.js';
import type { Store } from './store/store.js';

export type DutyOptions = {
  /** Between token sweeps (default 1 h). */
  tokenSweepMs?: number;
  /** Between lease sweeps (default 10 s: each daemon's own reclaim pass runs as often). */
  leaseSweepMs?: number;
  /**
   * How long a lease stays offered/bound in the table after its end before the sweep marks it (default 10 s): the
   * leader's clock decides, so this is the skew between daemons' clocks the sweep tolerates before it could free
   * an address another daemon still counts as held. The sweep is the shared table's one writer of ended leases and
   * publisher of their `lease.expired` (each daemon's reclaim pass only updates its memory).
   */
  leaseGraceMs?: number;
  /** The event log's window: events older than this go (default 24 h)... */
  eventMaxAgeMs?: number;
  /** ...but the newest this many always stay (default 10,000). */
  eventKeep?: number;
  /** Between retention runs (default 10 min). */
  retentionMs?: number;
};

/**
 * Starts the duties under `lead`; returns the closer (stops them and waits for a run in progress). `bus`: where
 * this daemon publishes what its duties did (the leases the sweep marked); the other daemons publish it from the
 * event log (src/peer-events.ts).
 */
export function startDuties(
  store: Store,
  lead: Leadership,
  log: Logger,
  o: DutyOptions = {},
  bus?: Bus,
): () => Promise<void> {
  const stops = [
    whileLeading(
      lead,
      every(o.tokenSweepMs ?? 3_600_000, () =>
        pruneExpiredTokens(store).then(
          (n) => n && log.info({ removed: n }, 'expired machine tokens removed'),
          (err) => log.warn({ err }, 'token sweep failed; retried at the next sweep'),
        ),
      ),
      log,
    ),
  ];
  const expire = store.expireLeases;
  // SQLite's one daemon keeps every lease in its index and reclaims them itself.
  if (store.sharedLeases && expire) {
    const sweep = async () => {
      const before = new Date(Date.now() - (o.leaseGraceMs ?? 10_000)).toISOString();
      // Each event in the marks' transaction: the other daemons' SSE subscribers hear of exactly these.
      const marked = await expire
        .call(store, before, { event: (l) => (l.was === 'bound' ? loggedEvent(expiredEvent(l.key, l)) : undefined) })
        .catch((err: Error) => {
          log.warn({ err }, 'lease sweep failed; retried at the next sweep');
          return [];
        });
      for (const l of marked) if (l.was === 'bound') bus?.emit(expiredEvent(l.key, l));
      if (marked.length) log.info({ expired: marked.length, first: marked[0]!.key }, 'ended leases marked expired');
    };
    stops.push(whileLeading(lead, every(o.leaseSweepMs ?? 10_000, sweep), log));
  }
  const events = store.events;
  if (events) {
    const prune = async () => {
      const maxAgeMs = o.eventMaxAgeMs ?? 86_400_000;
      const keep = o.eventKeep ?? 10_000;
      let total = 0;
      // In batches, so a first run on a long log does not hold one long transaction.
      for (let i = 0; i < 100; i++) {
        const n = await events.prune({ maxAgeMs, keep });
        total += n;
        if (n < 10_000) break;
      }
      if (total) log.info({ deleted: total }, 'event log: events past the retention window deleted');
    };
    stops.push(
      whileLeading(
        lead,
        every(o.retentionMs ?? 600_000, () =>
          prune().catch((err) => log.warn({ err }, 'event log retention failed; retried at the next run')),
        ),
        log,
      ),
    );
  }
  return async () => {
    await Promise.all(stops.map((s) => s()));
  };
}
