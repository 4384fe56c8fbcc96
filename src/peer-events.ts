/**
 * Changes other daemons made, on this daemon's bus (issue 17): with a shared inventory (PostgreSQL) the daemon
 * follows the store's event log and publishes each event another serverId wrote, as that daemon published it,
 * so SSE subscribers, the DHCP server's inventory cache and the token cache here hear of it as of a local change.
 * Its own events it already published when it made them. A store without an event log (SQLite) has one daemon.
 */
import type { Bus, EventInput } from './events.js';
import type { Logger } from './log.js';
import type { LoggedEvent, Store } from './store/store.js';

/** What a writer appends as `event.data`: the bus event it published, so a peer can publish the same. */
export function peerEvent(e: LoggedEvent): EventInput | undefined {
  const d = e.data as { type?: unknown } | undefined;
  return d && typeof d === 'object' && d.type === e.type ? (d as EventInput) : undefined;
}

/** Starts following from the newest event; returns the closer (undefined without an event log). */
export async function followPeers(
  store: Store,
  bus: Bus,
  serverId: string,
  log: Logger,
): Promise<(() => Promise<void>) | undefined> {
  const events = store.events;
  if (!events) return undefined;
  const from = await events.last();
  const f = events.follow(from, (e) => {
    if (e.serverId === serverId) return;
    const input = peerEvent(e);
    if (input) bus.emit(input);
    else log.debug({ id: e.id, type: e.type }, 'peer event without a bus form: skipped');
  });
  log.info({ from }, 'following the inventory event log of the other daemons');
  return () => f.close();
}
