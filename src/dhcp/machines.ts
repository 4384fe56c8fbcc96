/**
 * Which machine of the inventory a MAC belongs to, for the packet path: a set of every machine's MACs in memory
 * (so a request from an unknown MAC, most of a boot storm, costs no query) and the machines already looked up.
 * Any `machines.*` event clears both; while the set is rebuilt, lookups go to the store.
 */
import type { Bus } from '../events.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';

/** What DHCP needs of a machine: the boot decision's inputs and the option templates' fields. */
export type CachedMachine = { uuid: string; name: string; bootEnv?: string; params?: Record<string, unknown> };

export type MachineLookup = {
  /** The machine of a MAC if known without a query: a machine, null (none), undefined (ask `lookup`). */
  cached(mac: string): CachedMachine | null | undefined;
  lookup(mac: string): Promise<CachedMachine | undefined>;
};

export type MachineCache = MachineLookup & { close(): void };

/** At most this many MACs remembered (the set of unknown ones grows with a flood of random MACs). */
const MAX_REMEMBERED = 100_000;

export function machineCache(store: Store, bus: Bus, log: Logger): MachineCache {
  const machines = new Map<string, CachedMachine | null>();
  let knownMacs: Set<string> | undefined;
  let generation = 0;
  const loadKnownMacs = () => {
    knownMacs = undefined;
    const gen = ++generation;
    store.list('machines').then(
      (r) => {
        if (gen !== generation) return;
        const set = new Set<string>();
        for (const it of r.items) {
          const macs = (it.doc as { macs?: unknown }).macs;
          if (Array.isArray(macs)) for (const m of macs) if (typeof m === 'string') set.add(m);
        }
        knownMacs = set;
      },
      (err) => log.warn({ err }, 'dhcp: cannot list machines; looking MACs up one by one'),
    );
  };
  loadKnownMacs();
  const off = bus.on((e) => {
    if (!e.type.startsWith('machines.')) return;
    machines.clear();
    loadKnownMacs();
  });

  const cached = (mac: string): CachedMachine | null | undefined => {
    const hit = machines.get(mac);
    if (hit !== undefined) return hit;
    return knownMacs && !knownMacs.has(mac) ? null : undefined;
  };
  return {
    cached,
    async lookup(mac) {
      const hit = cached(mac);
      if (hit !== undefined) return hit ?? undefined;
      const uuid = await store.keyOf('machines', 'macs', mac);
      const m = uuid ? await store.get('machines', uuid) : undefined;
      const found = m ? ({ uuid, ...(m.doc as object) } as CachedMachine) : undefined;
      if (machines.size > MAX_REMEMBERED) machines.clear();
      machines.set(mac, found ?? null);
      return found;
    },
    close: off,
  };
}

/** A machine lookup over a fixed table (tests, tools): MAC -> machine. */
export function staticMachines(table: ReadonlyMap<string, CachedMachine>): MachineLookup {
  return {
    cached: (mac) => table.get(mac) ?? null,
    lookup: async (mac) => table.get(mac),
  };
}
