/**
 * A boot session: what the DHCP server decided for one network-boot client, handed to the rest of the daemon
 * through its injected `onBoot` callback (src/provision/sessions.ts keeps the recent ones). It carries the
 * decision's facts, so what follows the DHCP exchange (the TFTP transfer of the loader) can apply them without a
 * second lookup: the firmware quirk's blksize cap reaches a proxyDHCP client too, which never gets a lease.
 */
import type { BlksizeCap } from './caps.js';

export type BootOffer = {
  mac: string;
  /**
   * Where the client is: server mode, the yiaddr of the ACK (of an OFFER, the offered address); proxy mode, the
   * ciaddr of the port-4011 REQUEST when non-zero; else undefined (the address arrives later, with the lease).
   */
  address?: string;
  mode: 'server' | 'proxy';
  arch?: number;
  vendorClass?: string;
  bootEnv: string;
  filename: string;
  reason: string;
  /** A firmware quirk's TFTP blksize cap, and why (the quirk's reason and where the entry comes from). */
  blksize?: { value: number; why: string };
};

/** The blksize cap an offer carries, in the terms of src/boot/caps.ts. */
export function offerCap(offer: BootOffer): BlksizeCap | undefined {
  return offer.blksize
    ? { value: offer.blksize.value, source: 'quirk', why: `firmware quirk: ${offer.blksize.why}` }
    : undefined;
}
