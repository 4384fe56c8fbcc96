/**
 * Firmware quirks as data: a loader or a TFTP blksize cap chosen by vendor class, client arch or MAC prefix.
 * Operators extend the table from config (appended after these defaults; the first matching entry wins for
 * each field it sets). Keep the `why` honest: which firmware, which symptom.
 */

export type Quirk = {
  /** Every given field must match. vendorClass matches as a prefix of option 60; macPrefix as a prefix of the MAC. */
  match: { vendorClass?: string; arch?: number; macPrefix?: string };
  /** Replaces the loader file name (e.g. snponly.efi instead of ipxe.efi). */
  loader?: string;
  /** Upper bound for the TFTP blksize the TFTP server grants this client. */
  blksize?: number;
  why: string;
};

export const DEFAULT_QUIRKS: Quirk[] = [
  {
    // Hyper-V Generation 2 VMs: ipxe.efi's own NIC drivers do not drive the synthetic NIC; snponly.efi uses
    // the firmware's SNP driver instead.
    match: { macPrefix: '00:15:5d', arch: 7 },
    loader: 'snponly.efi',
    why: 'Hyper-V Gen2 firmware (MAC 00:15:5d): ipxe.efi has no driver for its synthetic NIC, snponly.efi uses the firmware SNP',
  },
];

export type QuirkResult = { loader?: { name: string; why: string }; blksize?: { value: number; why: string } };

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
    if (q.loader && !out.loader) out.loader = { name: q.loader, why: q.why };
    if (q.blksize && !out.blksize) out.blksize = { value: q.blksize, why: q.why };
  }
  return out;
}
