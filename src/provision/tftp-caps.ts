/**
 * The facts the TFTP blksize cap of a client address is worked out from (src/boot/caps.ts does the arithmetic):
 * the machine at that address and its resolved `tftp/max-blksize` param, and the served subnets.
 */
import { type BlksizeCap, type CapChoice, chooseCap, paramCap } from '../boot/caps.js';
import { resolveParams } from '../inventory/params.js';
import type { Machine } from '../model/machine.js';
import type { Lease, Subnet } from '../model/subnet.js';
import type { Store } from '../store/store.js';

/** The machine's `tftp/max-blksize` through the normal params resolution. */
export async function machineCap(store: Store, machine: Machine): Promise<{ cap?: BlksizeCap; problem?: string }> {
  return paramCap(machine.name, await resolveParams(store, machine));
}

/**
 * The machine a TFTP client is: the one whose recorded address it is, else the machine owning the MAC of the
 * lease at that address (a machine created after its lease was acknowledged has no address yet).
 */
export async function machineAtAddress(store: Store, address: string): Promise<Machine | undefined> {
  const byAddress = (await store.list('machines', { filters: [{ field: 'address', value: address }], limit: 1 }))
    .items[0]?.doc as Machine | undefined;
  if (byAddress) return byAddress;
  const lease = (await store.get('leases', address))?.doc as Lease | undefined;
  if (!lease || (lease.state !== 'bound' && lease.state !== 'offered')) return undefined;
  const uuid = await store.keyOf('machines', 'macs', lease.mac);
  return uuid ? ((await store.get('machines', uuid))?.doc as Machine | undefined) : undefined;
}

export type CapDecision = CapChoice & { machine?: Machine };

/** Every cap that applies to a TFTP client at `address`, and the smallest of them. */
export async function blksizeCapFor(store: Store, address: string, quirk?: BlksizeCap): Promise<CapDecision> {
  const [machine, subnets] = await Promise.all([
    machineAtAddress(store, address),
    store.list('subnets').then((r) => r.items.map((i) => i.doc as Subnet)),
  ]);
  const own = machine ? await machineCap(store, machine) : undefined;
  return { machine, ...chooseCap({ address, machine: own, subnets, quirk }) };
}
