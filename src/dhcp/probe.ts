/**
 * The probe behind a subnet's `probeBeforeOffer`: one ICMP echo request to an address about to be offered, and
 * whether anything answers within a short bound. RFC 2131 section 2.2: "the allocating server SHOULD probe the
 * reused address before allocating the address, e.g., with an ICMP echo request"; section 3.1 step 2: "When
 * allocating a new address, servers SHOULD check that the offered network address is not already in use; e.g., the
 * server may probe the offered address with an ICMP Echo Request." ISC dhcpd (ping-check) and dnsmasq do the same.
 *
 * The socket is the native helper's (native/icmp_echo.c): raw when the daemon may (CAP_NET_RAW), else an
 * unprivileged ping socket; watched on Node's loop, so a probe is a promise and other clients' packets are
 * answered while it is out (the state machine awaits it for that DISCOVER only). Opened on the first probe, so a
 * server with no probing subnet holds no ICMP socket. A host that does not answer costs the DISCOVER the timeout;
 * one that answers late (after it) counts as silence, as in dnsmasq.
 */
import type { Logger } from '../log.js';
import { type IcmpEcho, type IcmpHandle, native } from '../native/index.js';

/** How long a probe waits for the echo reply: ISC dhcpd's ping-timeout is 1 s; a client waits for the OFFER. */
export const PROBE_TIMEOUT_MS = 500;

export type AddressProbe = {
  /** True when something answers at `address` within the timeout. Rejects when no ICMP socket can be opened. */
  probe(address: string): Promise<boolean>;
  /** Closes the socket; probes still out resolve false. */
  close(): void;
};

/** Probes out at once at most (a DISCOVER flood): beyond, a probe fails and the address is offered unprobed. */
export const MAX_PROBES_OUT = 4096;

type Pending = { address: string; seq: number; timer: NodeJS.Timeout; resolve: (inUse: boolean) => void };

/**
 * An ICMP echo probe, or undefined without the native helper (the state machine then offers unprobed and warns
 * once per probing subnet). `addon` is for tests.
 */
export function openAddressProbe(opts: {
  log: Logger;
  timeoutMs?: number;
  /** Probes out at once at most (default MAX_PROBES_OUT). */
  maxOut?: number;
  addon?: IcmpEcho;
}): AddressProbe | undefined {
  const addon = opts.addon ?? native.icmpEcho;
  if (addon === undefined) return undefined;
  const timeoutMs = opts.timeoutMs ?? PROBE_TIMEOUT_MS;
  const maxOut = Math.min(opts.maxOut ?? MAX_PROBES_OUT, MAX_PROBES_OUT);
  // A raw socket sees every echo reply the host gets: ours carry this identifier. A ping socket gets only its own.
  const id = (process.pid ^ 0x504c) & 0xffff;
  const bySeq = new Map<number, Pending>();
  const byAddress = new Map<string, Promise<boolean>>();
  let handle: IcmpHandle | undefined;
  let raw = true;
  let seq = Math.floor(Math.random() * 0x10000);
  let closed = false;

  const settle = (p: Pending, inUse: boolean) => {
    clearTimeout(p.timer);
    bySeq.delete(p.seq);
    p.resolve(inUse);
  };
  const onReply = (address: string, replyId: number, replySeq: number) => {
    const p = bySeq.get(replySeq);
    // A reply is ours only from the address asked, with the sequence sent (and on a raw socket our identifier).
    if (p === undefined || p.address !== address || (raw && replyId !== id)) return;
    settle(p, true);
  };
  const socket = (): IcmpHandle => {
    if (handle === undefined) {
      handle = addon.icmpOpen(onReply);
      raw = addon.icmpKind(handle) === 'raw';
      opts.log.info({ socket: raw ? 'raw' : 'ping (unprivileged)' }, 'dhcp: ICMP echo probe socket open');
    }
    return handle;
  };

  const probeOnce = (address: string): Promise<boolean> =>
    new Promise<boolean>((resolve, reject) => {
      if (closed) return resolve(false);
      let h: IcmpHandle;
      try {
        h = socket();
      } catch (err) {
        return reject(err);
      }
      if (bySeq.size >= maxOut) return reject(new Error(`${maxOut} ICMP echo probes already out`));
      // The next sequence number not out (fewer than 65536 are: the bound above).
      do seq = (seq + 1) & 0xffff;
      while (bySeq.has(seq));
      const p: Pending = { address, seq, resolve, timer: setTimeout(() => settle(p, false), timeoutMs) };
      bySeq.set(seq, p);
      const sent = addon.icmpEcho(h, address, id, seq);
      if (sent < 0) {
        // EHOSTUNREACH, ENETUNREACH...: nothing can answer there now. Silence, logged for the operator.
        opts.log.debug({ address, errno: -sent }, 'dhcp: ICMP echo probe not sent; counted as silence');
        settle(p, false);
      }
    });

  return {
    probe(address) {
      // Two DISCOVERs probing one address at once share one echo (the offer gate makes it rare).
      let out = byAddress.get(address);
      if (out === undefined) {
        out = probeOnce(address).finally(() => byAddress.delete(address));
        byAddress.set(address, out);
      }
      return out;
    },
    close() {
      if (closed) return;
      closed = true;
      for (const p of [...bySeq.values()]) settle(p, false);
      if (handle !== undefined) addon.icmpClose(handle);
    },
  };
}
