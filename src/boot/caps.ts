/**
 * Which TFTP blksize cap applies, as arithmetic on facts already loaded (src/provision/tftp-caps.ts loads them).
 * Some UEFI TFTP clients mis-negotiate large blocks (QEMU's UEFI client needed blksize <= 1024, crowbar-core PR
 * 1078), so operators cap it per subnet (the subnet's `tftpMaxBlksize`), per machine or class of machines (the
 * `tftp/max-blksize` param, resolved machine -> profiles -> global -> default), and per firmware (a quirk's
 * `blksize`, chosen at DHCP time). The smallest applicable cap wins; the global `--tftp-max-blksize` stays the
 * upper bound (the TFTP server applies it).
 */
import { cidrContains } from '../model/common.js';
import { Blksize } from '../model/quirk.js';
import type { Subnet } from '../model/subnet.js';

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
 * The machine's cap from its resolved params (`values`, and `sources` naming where each came from). A value that
 * is not an integer in 8..65464 (set before the param had a schema, or with the schema edited) is ignored and
 * reported in `problem`.
 */
export function paramCap(
  machineName: string,
  resolved: { values: Record<string, unknown>; sources: Record<string, string> },
): { cap?: BlksizeCap; problem?: string } {
  if (!(BLKSIZE_PARAM in resolved.values)) return {};
  const v = resolved.values[BLKSIZE_PARAM];
  const where = `param ${BLKSIZE_PARAM} from ${resolved.sources[BLKSIZE_PARAM]} of machine '${machineName}'`;
  const ok = Blksize.safeParse(v);
  if (!ok.success) return { problem: `${where} is ${JSON.stringify(v)}, not an integer in 8..65464: ignored` };
  return { cap: { value: ok.data, source: 'machine', why: `${where} = ${ok.data}` } };
}

export type CapFacts = {
  address: string;
  /** The machine's own cap (paramCap), when the client is a known machine. */
  machine?: { cap?: BlksizeCap; problem?: string };
  subnets: readonly Subnet[];
  /** A firmware quirk's cap chosen at DHCP time for this client. */
  quirk?: BlksizeCap;
};

export type CapChoice = {
  /** The cap that applies (the smallest), if any; compare with the global maximum before saying it capped. */
  cap?: BlksizeCap;
  /** Every applicable cap, for the log. */
  all: BlksizeCap[];
  problems: string[];
};

/** Every cap that applies, and the smallest of them. */
export function chooseCap(f: CapFacts): CapChoice {
  const problems: string[] = [];
  // Most specific first: on a tie the machine's own setting is the one named.
  const all: BlksizeCap[] = [];
  if (f.machine?.cap) all.push(f.machine.cap);
  if (f.machine?.problem) problems.push(f.machine.problem);
  const s = subnetCap(f.subnets, f.address);
  if (s) all.push(s);
  if (f.quirk) all.push(f.quirk);
  return { cap: smallestCap(all), all, problems };
}
