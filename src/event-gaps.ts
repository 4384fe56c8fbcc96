/**
 * Word that a daemon's bus missed events (issue 17): another daemon's changes reach this one through the shared
 * event log (src/peer-events.ts), and when retention deleted some before this daemon read them (it was cut off
 * longer than the log's window) they are gone. The bus cannot say so in an event of its own, so whoever serves
 * the bus onward (the SSE stream, src/http/events.ts) hears of it here and tells its clients to re-read.
 */
import type { Bus } from './events.js';
import type { EventGap } from './store/store.js';

const listeners = new WeakMap<Bus, Set<(g: EventGap) => void>>();

/** Hears of gaps in what `bus` published; returns the unsubscriber. */
export function onEventGap(bus: Bus, fn: (g: EventGap) => void): () => void {
  let set = listeners.get(bus);
  if (!set) {
    set = new Set();
    listeners.set(bus, set);
  }
  set.add(fn);
  return () => set.delete(fn);
}

export function reportEventGap(bus: Bus, g: EventGap): void {
  for (const fn of listeners.get(bus) ?? []) fn(g);
}
