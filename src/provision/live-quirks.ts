/**
 * The firmware quirk table the DHCP server consults: the `firmwareQuirks` pref, then DEFAULT_QUIRKS. It is one
 * array, updated in place when the prefs change (`prefs.updated` on the bus), so a server holding it sees an
 * operator's new entry from the next request on, without a restart. (The DHCP rework moves this table into the
 * inventory cache, `InventoryCache.quirks()`; this module goes then.)
 */
import { DEFAULT_QUIRKS, type Quirk, quirkTable } from '../boot/quirks.js';
import { coalesced } from '../coalesce.js';
import type { Bus } from '../events.js';
import { getPrefs } from '../inventory/resources.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';

export type LiveQuirks = { table: readonly Quirk[]; reload(): Promise<void>; close(): void };

export async function liveQuirks(store: Store, bus: Bus, log: Logger): Promise<LiveQuirks> {
  const table: Quirk[] = [...DEFAULT_QUIRKS];
  const reload = async () => {
    const prefs = await getPrefs(store);
    table.splice(0, table.length, ...quirkTable(prefs.firmwareQuirks));
  };
  await reload().catch((err) =>
    log.error({ err: (err as Error).message }, 'firmware quirks: prefs are unreadable; only the built-in quirks apply'),
  );
  // Coalesce bursts of prefs writes into one reload, in order.
  const reloads = coalesced(reload, (err) =>
    log.error({ err: (err as Error).message }, 'firmware quirks: reloading prefs failed; keeping the previous table'),
  );
  const off = bus.on((e) => {
    if (e.type === 'prefs.updated') reloads.trigger();
  });
  return {
    table,
    reload: async () => {
      await reloads.settled();
      await reload();
    },
    close: off,
  };
}
