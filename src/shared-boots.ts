/**
 * The boot timeline recorder on an inventory several daemons share (issue 17). src/inventory/boots.ts keeps each
 * machine's current boot in memory and writes it whole: right for one daemon, but with two (the leader driving a
 * reprovision records its steps, the daemon answering the machine's DHCP and callback records those) each would
 * overwrite the other's entries with its stale copy, and a reprovision could wait for ever for a callback that
 * was overwritten. Here each record starts from the stored boot (once this daemon's previous record for that
 * machine is committed), so entries another daemon wrote are kept. Two daemons recording one machine in the same
 * few milliseconds can still lose one entry: boots.ts should write conditionally (If-Match) and retry.
 */
import { type BootRecorder, bootRecorder } from './inventory/boots.js';
import type { Store } from './store/store.js';

export function sharedBootRecorder(store: Store, inner: BootRecorder = bootRecorder(store)): BootRecorder {
  const chains = new Map<string, Promise<unknown>>();
  return {
    ...inner,
    record(machine, event, opts) {
      const prev = chains.get(machine) ?? Promise.resolve();
      const p = prev
        .catch(() => undefined)
        .then(() => {
          inner.forget(machine);
          return inner.record(machine, event, opts);
        });
      chains.set(machine, p);
      const done = () => {
        if (chains.get(machine) === p) chains.delete(machine);
      };
      p.then(done, done);
      return p;
    },
  };
}
