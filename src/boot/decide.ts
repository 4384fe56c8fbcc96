/**
 * The boot decision: "should this machine network-boot, and with what?" A pure function of the request facts
 * and the inventory, called by the DHCP server (and testable without a socket). Every answer carries a reason
 * sentence that names the rule or quirk that chose it; it goes into the log and the `dhcp.boot` event.
 */
import { DEFAULT_QUIRKS, findQuirks, type Quirk } from './quirks.js';

/** RFC 4578 2.1 / IANA "Processor Architecture Types" (option 93). */
export const Arch = {
  BiosX86: 0,
  EfiIa32: 6,
  EfiBc: 7, // x86-64 UEFI in practice (what OVMF and most x86-64 firmware send)
  EfiX64: 9,
  EfiArm64: 11,
  EfiX64Http: 16,
  EfiArm64Http: 19,
} as const;

export type BootFacts = {
  mac: string;
  arch?: number;
  vendorClass?: string;
  userClass?: string[];
  machine?: { uuid: string; name: string; bootEnv?: string };
  prefs: { unknownBootEnv: string };
  server: { address: string; httpPort: number };
  mode: 'full' | 'proxy' | 'unmanaged';
  /**
   * Whether Plinth has this loader file (assets dir, the distribution's iPXE, or the file store): a loader it
   * does not have is never offered. Absent: every loader counts as present (tests of the policy alone).
   */
  hasLoader?: (name: string) => boolean;
  quirks?: readonly Quirk[];
};

export type BootOption = { code: number; value: Buffer };
export type BootDecision =
  | { boot: false; reason: string }
  | {
      boot: true;
      /** TFTP file name or an http:// URL. */
      filename: string;
      nextServer: string;
      options: BootOption[];
      /** TFTP blksize cap from a quirk, for the TFTP server. */
      blksize?: number;
      /** Why that cap: the quirk's reason and, in brackets, where its entry comes from. */
      blksizeWhy?: string;
      bootEnv: string;
      reason: string;
    };

export const LOADERS = {
  bios: 'undionly.kpxe',
  efiX64: 'ipxe.efi',
  efiArm64: 'ipxe-arm64.efi',
} as const;

/** iPXE's encapsulated option 175, sub-option 176 (no-pxedhcp) = 1: do not wait ~7 s for a ProxyDHCP offer. */
export const IPXE_NO_PXEDHCP: BootOption = { code: 175, value: Buffer.from([176, 1, 1]) };

export function decideBoot(f: BootFacts): BootDecision {
  if (f.mode === 'unmanaged')
    return { boot: false, reason: 'the subnet is unmanaged: addresses only, no boot options' };
  const vc = f.vendorClass ?? '';
  const isIpxe = (f.userClass ?? []).includes('iPXE');
  const isHttpClient = vc.startsWith('HTTPClient');
  const isPxe = vc.startsWith('PXEClient');
  if (!isIpxe && !isHttpClient && !isPxe && f.arch === undefined) {
    return {
      boot: false,
      reason: 'not a network-boot client (no PXEClient/HTTPClient vendor class, no option 93, no iPXE user class)',
    };
  }
  const bootEnv = f.machine?.bootEnv ?? f.prefs.unknownBootEnv;
  const who = f.machine
    ? `machine '${f.machine.name}' (bootEnv ${bootEnv})`
    : `unknown machine (unknownBootEnv ${bootEnv})`;
  const base = `http://${f.server.address}:${f.server.httpPort}`;
  const quirks = findQuirks(f.quirks ?? DEFAULT_QUIRKS, { vendorClass: vc, arch: f.arch, mac: f.mac });
  const blksize = quirks.blksize?.value;
  const from = (q: { from?: string } | undefined) => (q?.from ? ` [${q.from}]` : '');
  const blkWhy = quirks.blksize
    ? `; blksize capped at ${quirks.blksize.value} (${quirks.blksize.why})${from(quirks.blksize)}`
    : '';
  const common = {
    nextServer: f.server.address,
    bootEnv,
    ...(blksize ? { blksize, blksizeWhy: `${quirks.blksize!.why}${from(quirks.blksize)}` } : {}),
  };

  if (isIpxe) {
    // iPXE already runs: hand it the generic script, which chains the per-machine one over HTTP.
    const options = f.mode === 'full' ? [IPXE_NO_PXEDHCP] : [];
    return {
      boot: true,
      filename: `${base}/boot/ipxe`,
      options,
      ...common,
      reason: `${who}: user class iPXE -> the iPXE script over HTTP${f.mode === 'full' ? ', with 175.176 no-pxedhcp so iPXE does not wait for a proxy offer' : ''}`,
    };
  }

  const loaderFor = (arch: number | undefined): { name: string; why: string } | { error: string } => {
    if (arch === Arch.EfiArm64 || arch === Arch.EfiArm64Http) {
      return { name: LOADERS.efiArm64, why: `arm64 UEFI (option 93 = ${arch}) -> ${LOADERS.efiArm64}` };
    }
    if (arch === Arch.EfiBc || arch === Arch.EfiX64 || arch === Arch.EfiX64Http) {
      return { name: LOADERS.efiX64, why: `x86-64 UEFI (option 93 = ${arch}) -> ${LOADERS.efiX64}` };
    }
    if (arch === undefined || arch === Arch.BiosX86) {
      return { name: LOADERS.bios, why: `BIOS PXE (option 93 = ${arch ?? 'absent'}) -> ${LOADERS.bios}` };
    }
    return { error: `client arch ${arch} has no loader (known: 0 BIOS, 7/9/16 x86-64 UEFI, 11/19 arm64 UEFI)` };
  };
  const picked = loaderFor(f.arch);
  if ('error' in picked) return { boot: false, reason: `${who}: ${picked.error}` };
  const loader = quirks.loader ? quirks.loader.name : picked.name;
  const quirkWhy = quirks.loader ? `; quirk: ${loader} instead (${quirks.loader.why})${from(quirks.loader)}` : '';
  // A loader Plinth does not have would cost the client a TFTP "file not found" or a 404 and strand it in its
  // firmware: no boot file is offered, and the reason names what to install.
  if (f.hasLoader && !f.hasLoader(loader)) {
    return { boot: false, reason: `${who}: ${picked.why}${quirkWhy}, but ${missingLoader(loader)}` };
  }

  if (isHttpClient) {
    // UEFI HTTP Boot: the reply must echo option 60 "HTTPClient" and carry a URL, or the firmware ignores it.
    return {
      boot: true,
      filename: `${base}/files/${loader}`,
      options: [{ code: 60, value: Buffer.from('HTTPClient') }],
      ...common,
      reason: `${who}: UEFI HTTP Boot (vendor class HTTPClient), ${picked.why} over HTTP${quirkWhy}${blkWhy}`,
    };
  }
  return {
    boot: true,
    filename: loader,
    options: [],
    ...common,
    reason: `${who}: ${picked.why} over TFTP${quirkWhy}${blkWhy}`,
  };
}

/** The reason's tail when a loader is missing: which file, and where Plinth looked. */
export function missingLoader(name: string): string {
  return (
    `the boot loader ${name} is missing (not in --assets-dir, the distribution's iPXE locations or the file ` +
    `store): install the ipxe package or copy ${name} into the assets dir`
  );
}
