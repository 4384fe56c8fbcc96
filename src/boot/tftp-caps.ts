/**
 * Which TFTP blksize cap applies to a client address. Some UEFI TFTP clients mis-negotiate large blocks (QEMU's
 * UEFI client needed blksize <= 1024, crowbar-core PR 1078), so operators cap it per subnet (the subnet's
 * `tftpMaxBlksize`), per machine or class of machines (the `tftp/max-blksize` param, resolved machine -> profiles
 * -> global -> default), and per firmware (a quirk's `blksize`, chosen at DHCP time). The smallest applicable cap
 * wins; the global `--tftp-max-blksize` stays the upper bound (the TFTP server applies it).
 */
import { resolveParams } from '../inventory/params.js';
import { cidrContains } from '../model/common.js';
import type { Machine } from '../model/machine.js';
import { Blksize } from '../model/quirk.js';
import type { Lease, Subnet } from '../model/subnet.js';
import type { Store } from '../store/store.js';

/** The param that caps the TFTP blksize of a machine (or, set on a profile, of every machine using it). */
export const BLKSIZE_PARAM = 'tftp/max-blksize';

/** Its definition, created at first start so values set through the API are checked. */
export const BLKSIZE_PARAM_DEF = {
  name: BLKSIZE_PARAM,
  schema: { type: 'integer', minimum: 8, maximum: 65464 },
  description:
    'Largest TFTP blksize granted to this machine (8..65464), e.g. 1024 for UEFI TFTP clients that mis-negotiate large blocks; the smallest of this, the subnet tftpMaxBlksize, a firmware quirk and --tftp-max-blksize wins',
  secure: false,
};

export type BlksizeCap = { value: number; source: 'quirk' | 'subnet' | 'machine'; why: string };

/** The smallest cap (the first given wins a tie), or undefined when none applies. */
export function smallestCap(caps: readonly (BlksizeCap | undefined)[]): BlksizeCap | undefined {
  let best: BlksizeCap | undefined;
  for (const c of caps) if (c && (!best || c.value < best.value)) best = c;
  return best;
}

/** The smallest `tftpMaxBlksize` among the subnets that contain the address. */
export function subnetCap(subnets: readonly Subnet[], address: string): BlksizeCap | undefined {
  return smallestCap(
    subnets
      .filter((s) => typeof s.tftpMaxBlksize === 'number' && cidrContains(s.subnet, address))
      .map((s) => ({
        value: s.tftpMaxBlksize!,
        source: 'subnet' as const,
        why: `subnet '${s.name}' (${s.subnet}) tftpMaxBlksize ${s.tftpMaxBlksize}`,
      })),
  );
}

/**
 * The machine's `tftp/max-blksize` through the normal params resolution. A value that is not an integer in
 * 8..65464 (set before the param had a schema, or with the schema edited) is ignored and reported in `problem`.
 */
export async function machineCap(store: Store, machine: Machine): Promise<{ cap?: BlksizeCap; problem?: string }> {
  const r = await resolveParams(store, machine);
  if (!(BLKSIZE_PARAM in r.values)) return {};
  const v = r.values[BLKSIZE_PARAM];
  const where = `param ${BLKSIZE_PARAM} from ${r.sources[BLKSIZE_PARAM]} of machine '${machine.name}'`;
  const ok = Blksize.safeParse(v);
  if (!ok.success) return { problem: `${where} is ${JSON.stringify(v)}, not an integer in 8..65464: ignored` };
  return { cap: { value: ok.data, source: 'machine', why: `${where} = ${ok.data}` } };
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

export type CapDecision = {
  machine?: Machine;
  /** The cap that applies (the smallest), if any; compare with the global maximum before saying it capped. */
  cap?: BlksizeCap;
  /** Every applicable cap, for the log. */
  all: BlksizeCap[];
  problems: string[];
};

/** Every cap that applies to a TFTP client at `address`, and the smallest of them. */
export async function blksizeCapFor(store: Store, address: string, quirk?: BlksizeCap): Promise<CapDecision> {
  const [machine, subnets] = await Promise.all([
    machineAtAddress(store, address),
    store.list('subnets').then((r) => r.items.map((i) => i.doc as Subnet)),
  ]);
  const problems: string[] = [];
  // Most specific first: on a tie the machine's own setting is the one named.
  const all: BlksizeCap[] = [];
  if (machine) {
    const m = await machineCap(store, machine);
    if (m.cap) all.push(m.cap);
    if (m.problem) problems.push(m.problem);
  }
  const s = subnetCap(subnets, address);
  if (s) all.push(s);
  if (quirk) all.push(quirk);
  return { machine, cap: smallestCap(all), all, problems };
}
