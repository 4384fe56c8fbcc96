/**
 * DHCP's side of the boot seam. The facts a request carries (options 93, 60, 77), the decision asked of
 * src/boot/decide.ts (a pure function) with the live prefs and quirk table, and what a reply carrying a boot
 * hands on: the `dhcp.boot` event (the boot timeline), a log line, and the injected `onBoot(offer)` that
 * records the boot session the TFTP and HTTP sides then find (with the quirk's block-size cap).
 */
import { type BootDecision, decideBoot } from '../boot/decide.js';
import type { Quirk } from '../boot/quirks.js';
import type { BootOffer } from '../boot/session.js';
import type { Bus } from '../events.js';
import type { Logger } from '../log.js';
import type { CachedMachine } from './machines.js';
import { decodeUserClass, Opt } from './options.js';
import type { DhcpPacket } from './packet.js';

export type { BootOffer };

export type BootAsk = {
  req: DhcpPacket;
  mac: string;
  machine: CachedMachine | undefined;
  /** The server the client fetches from (subnet's or reservation's nextServer, else this server). */
  nextServer: string;
  mode: 'full' | 'proxy';
};

/** A decision to boot, with the facts it was made from. */
export type BootChoice = {
  decision: Extract<BootDecision, { boot: true }>;
  mac: string;
  machine: CachedMachine | undefined;
  mode: 'full' | 'proxy';
  arch?: number;
  vendorClass?: string;
  /** The firmware quirk's TFTP block-size cap, and why. */
  blksize?: { value: number; why: string };
};

/** The boot decision for a request: a choice, or undefined (not a network-boot client, no loader, ...). */
export type Decide = (ask: BootAsk) => BootChoice | undefined;

/** Reasons that are no one's mistake: an ordinary DHCP client, an unmanaged subnet. */
const NOT_BOOTING = ['not a network-boot client', 'the subnet is unmanaged'];

export function bootDecider(deps: {
  prefs: () => { unknownBootEnv: string };
  quirks: () => readonly Quirk[];
  httpPort: number;
  hasLoader?: (name: string) => boolean;
  /** A network-boot client that is not booted (a loader missing, ...): the decision's reason, for the log. */
  onNoBoot?: (mac: string, reason: string) => void;
}): Decide {
  return ({ req, mac, machine, nextServer, mode }) => {
    const a = req.options.get(Opt.ClientArch);
    const vc = req.options.get(Opt.VendorClass);
    const uc = req.options.get(Opt.UserClass);
    const arch = a && a.length >= 2 ? a.readUInt16BE(0) : undefined;
    const vendorClass = vc?.toString('latin1');
    const decision = decideBoot({
      mac,
      arch,
      vendorClass,
      userClass: uc ? decodeUserClass(uc) : undefined,
      machine,
      prefs: deps.prefs(),
      server: { address: nextServer, httpPort: deps.httpPort },
      mode,
      hasLoader: deps.hasLoader,
      quirks: deps.quirks(),
    });
    if (!decision.boot) {
      if (!NOT_BOOTING.some((p) => decision.reason.startsWith(p))) deps.onNoBoot?.(mac, decision.reason);
      return undefined;
    }
    const choice: BootChoice = { decision, mac, machine, mode, arch, vendorClass };
    // Only a quirk caps blksize; the decision names its entry.
    if (decision.blksize) choice.blksize = { value: decision.blksize, why: decision.blksizeWhy ?? 'firmware quirk' };
    return choice;
  };
}

/** The offer handed to `onBoot`: `address` is the client's (yiaddr, or ciaddr in proxy mode), when it has one. */
export function bootOffer(c: BootChoice, address: string | undefined): BootOffer {
  const d = c.decision;
  return {
    mac: c.mac,
    ...(address && address !== '0.0.0.0' ? { address } : {}),
    mode: c.mode === 'full' ? 'server' : 'proxy',
    ...(c.arch !== undefined ? { arch: c.arch } : {}),
    ...(c.vendorClass !== undefined ? { vendorClass: c.vendorClass } : {}),
    bootEnv: d.bootEnv,
    filename: d.filename,
    reason: d.reason,
    ...(c.blksize ? { blksize: c.blksize } : {}),
  };
}

/**
 * A reply carrying a boot is about to leave: the `dhcp.boot` event, the log line, and `onBoot` (which must not
 * throw into the packet path: its error is logged).
 */
export function announceBoot(
  deps: { bus: Bus; log: Logger; onBoot?: (offer: BootOffer) => void },
  c: BootChoice,
  offer: BootOffer,
): void {
  const d = c.decision;
  deps.bus.emit({
    type: 'dhcp.boot',
    key: c.mac,
    machine: c.machine?.uuid,
    data: {
      mac: c.mac,
      filename: d.filename,
      nextServer: d.nextServer,
      bootEnv: d.bootEnv,
      reason: d.reason,
      mode: c.mode,
      arch: c.arch,
      vendorClass: c.vendorClass,
      ...(d.blksize ? { blksize: d.blksize } : {}),
    },
  });
  deps.log.info({ mac: c.mac, machine: c.machine?.name, filename: d.filename }, `dhcp: boot: ${d.reason}`);
  if (!deps.onBoot) return;
  try {
    deps.onBoot(offer);
  } catch (err) {
    deps.log.error({ err, mac: c.mac }, 'dhcp: recording the boot session failed; the reply is sent all the same');
  }
}
