/**
 * Changes other daemons made, on this daemon's bus (issue 17): with a shared inventory (PostgreSQL) the daemon
 * follows the store's event log and publishes each event another serverId wrote, as that daemon published it,
 * so SSE subscribers, the DHCP server's inventory cache and the token cache here hear of it as of a local change.
 * Its own events it already published when it made them. A store without an event log (SQLite) has one daemon.
 */
import { reportEventGap } from './event-gaps.js';
import type { Bus, EventInput } from './events.js';
import type { Logger } from './log.js';
import type { ChangeEvent, EventGap, LoggedEvent, Store } from './store/store.js';

/** A bus event as a writer appends it to the log, so a peer can publish the same (peerEvent). */
export function loggedEvent(e: EventInput): ChangeEvent {
  return { type: e.type, ...(e.key === undefined ? {} : { key: e.key }), data: e };
}

/** What a writer appends as `event.data`: the bus event it published, so a peer can publish the same. */
export function peerEvent(e: LoggedEvent): EventInput | undefined {
  const d = e.data as { type?: unknown } | undefined;
  return d && typeof d === 'object' && d.type === e.type ? (d as EventInput) : undefined;
}

/**
 * Starts following from the newest event; returns the closer (undefined without an event log). A gap (events
 * deleted by retention before they were read) is reported on the bus's gap channel (src/event-gaps.ts), so SSE
 * clients get `event: lost` and re-read.
 */
export async function followPeers(
  store: Store,
  bus: Bus,
  serverId: string,
  log: Logger,
  /** Each event another daemon wrote, as logged (the fleet's leader learns of rollout changes so). */
  onPeer?: (e: LoggedEvent) => void,
  /** After a gap (retention outran this daemon): whatever caches peer changes should reload. */
  onGap?: (g: EventGap) => void,
): Promise<(() => Promise<void>) | undefined> {
  const events = store.events;
  if (!events) return undefined;
  const from = await events.last();
  const f = events.follow(
    from,
    (e) => {
      if (e.serverId === serverId) return;
      onPeer?.(e);
      const input = peerEvent(e);
      if (input) bus.emit(input);
      else log.debug({ id: e.id, type: e.type }, 'peer event without a bus form: skipped');
    },
    (gap) => {
      log.warn(gap, 'events of other daemons were deleted by retention before this daemon read them');
      reportEventGap(bus, gap);
      onGap?.(gap);
    },
  );
  log.info({ from }, 'following the inventory event log of the other daemons');
  return () => f.close();
}
