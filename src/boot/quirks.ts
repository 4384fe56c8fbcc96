/**
 * Firmware quirks as data: a loader or a TFTP blksize cap chosen by vendor class, client arch or MAC prefix.
 * Operators extend the table with the `firmwareQuirks` pref (src/model/quirk.ts validates it), which goes
 * *before* these defaults (`quirkTable`): for each field (loader, blksize) the first matching entry wins, so an
 * operator entry overrides a built-in one. Keep the `why` honest: which firmware, which symptom.
 */
import type { FirmwareQuirk } from '../model/quirk.js';

export type Quirk = {
  /** Every given field must match. vendorClass matches as a prefix of option 60; macPrefix as a prefix of the MAC. */
  match: { vendorClass?: string; arch?: number; macPrefix?: string };
  /** Replaces the loader file name (e.g. snponly.efi instead of ipxe.efi). */
  loader?: string;
  /** Upper bound for the TFTP blksize the TFTP server grants this client. */
  blksize?: number;
  why: string;
  /** Where the entry comes from, named in the boot reason (e.g. "prefs firmwareQuirks[0]", "built-in"). */
  from?: string;
};

export const DEFAULT_QUIRKS: Quirk[] = [
  {
    // Hyper-V Generation 2 VMs: ipxe.efi's own NIC drivers do not drive the synthetic NIC; snponly.efi uses
    // the firmware's SNP driver instead.
    match: { macPrefix: '00:15:5d', arch: 7 },
    loader: 'snponly.efi',
    why: 'Hyper-V Gen2 firmware (MAC 00:15:5d): ipxe.efi has no driver for its synthetic NIC, snponly.efi uses the firmware SNP',
    from: 'built-in',
  },
];

/** The table the DHCP server consults: the operator's entries (the `firmwareQuirks` pref) first, then the defaults. */
export function quirkTable(operator: readonly FirmwareQuirk[], defaults: readonly Quirk[] = DEFAULT_QUIRKS): Quirk[] {
  return [
    ...operator.map((q, i) => ({ ...q, match: { ...q.match }, from: `prefs firmwareQuirks[${i}]` })),
    ...defaults,
  ];
}

export type QuirkResult = {
  loader?: { name: string; why: string; from?: string };
  blksize?: { value: number; why: string; from?: string };
};

export function findQuirks(
  table: readonly Quirk[],
  facts: { vendorClass?: string; arch?: number; mac: string },
): QuirkResult {
  const out: QuirkResult = {};
  const mac = facts.mac.toLowerCase();
  for (const q of table) {
    const m = q.match;
    if (m.vendorClass !== undefined && !(facts.vendorClass ?? '').startsWith(m.vendorClass)) continue;
    if (m.arch !== undefined && m.arch !== facts.arch) continue;
    if (m.macPrefix !== undefined && !mac.startsWith(m.macPrefix.toLowerCase().replace(/-/g, ':'))) continue;
    if (q.loader && !out.loader) out.loader = { name: q.loader, why: q.why, ...(q.from ? { from: q.from } : {}) };
    if (q.blksize && !out.blksize) out.blksize = { value: q.blksize, why: q.why, ...(q.from ? { from: q.from } : {}) };
  }
  return out;
}
