/**
 * Reply building, shared by the address server (state-machine.ts) and proxyDHCP (proxy.ts): the reply header
 * copied from the request, server id, lease times, subnet and operator options (with `{{field}}`
 * substitution), the boot decision's fields, and the last step before the wire (echoed 61 and 82, the client's
 * option order, its maximum message size).
 */
import type { BootDecision } from '../boot/decide.js';
import type { SubnetInfo } from '../inventory/cache.js';
import { checkOptionValue } from '../model/dhcp-option-values.js';
import type { Reservation } from '../model/subnet.js';
import type { CachedMachine } from './machines.js';
import { encodeOptionValue, ipBytes, MessageType, Opt, substituteFields } from './options.js';
import { type DhcpPacket, emptyPacket, encodeWithReport } from './packet.js';

/** A reply's header from its request (xid, flags, giaddr, chaddr), with 53 and 54 set. */
export function baseReply(req: DhcpPacket, type: number, server: string): DhcpPacket {
  const r = emptyPacket(2);
  r.htype = req.htype;
  r.hlen = req.hlen;
  r.xid = req.xid;
  r.flags = req.flags;
  r.giaddr = req.giaddr;
  r.chaddr = req.chaddr;
  r.options.set(Opt.MessageType, Buffer.from([type]));
  r.options.set(Opt.ServerId, serverIdBytes(server));
  return r;
}

// A server has a handful of addresses: their option 54 bytes are made once.
const sidCache = new Map<string, Buffer>();
function serverIdBytes(server: string): Buffer {
  let b = sidCache.get(server);
  if (!b) {
    b = ipBytes(server);
    if (sidCache.size > 1000) sidCache.clear();
    sidCache.set(server, b);
  }
  return b;
}

export const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

/**
 * u32 for the values every reply of a subnet repeats (lease times, mask, broadcast), one buffer per value shared
 * by the replies (never written after it is made: options are replaced, not edited): five fewer buffers per
 * reply on the packet path. Bounded: a value is a subnet's or a lease time (a client's option 51 can ask for any).
 */
const u32Cache = new Map<number, Buffer>();
const u32Shared = (n: number): Buffer => {
  let b = u32Cache.get(n);
  if (!b) {
    if (u32Cache.size >= 256) u32Cache.clear();
    b = u32(n);
    u32Cache.set(n, b);
  }
  return b;
};

/**
 * The lease time to give: the client's option 51 when it asks for less than the subnet's (RFC 2131 4.3.1:
 * the server MAY honour it; ISC dhcpd does, up to max-lease-time), never more, never under 60 s (the
 * smallest lease time a subnet can have).
 */
export function leaseTimeFor(pkt: DhcpPacket, max: number): number {
  const o = pkt.options.get(Opt.LeaseTime);
  if (o?.length !== 4) return max;
  return Math.min(max, Math.max(60, o.readUInt32BE(0)));
}

/** What an OFFER/ACK/INFORM reply is filled from. */
export type Fill = {
  req: DhcpPacket;
  mac: string;
  subnet: SubnetInfo;
  reservation: Reservation | undefined;
  machine: CachedMachine | undefined;
  address: string;
  leaseSeconds: number | undefined;
  /** An operator option that cannot be encoded (a warning once per key). */
  warnOnce(key: string, obj: object, msg: string): void;
};

function fieldsOf(f: Fill) {
  const hn = f.req.options.get(Opt.Hostname);
  return {
    mac: f.mac,
    address: f.address,
    ip: f.address,
    subnet: { name: f.subnet.name, cidr: f.subnet.subnet },
    machine: f.machine ?? {},
    hostname: hn?.toString('latin1') ?? '',
  };
}

/** Lease times, subnet mask and broadcast, operator options (subnet, then reservation), hostname, siaddr. */
export function fillOptions(r: DhcpPacket, f: Fill): void {
  const o = r.options;
  const { subnet, reservation } = f;
  if (f.leaseSeconds !== undefined) {
    o.set(Opt.LeaseTime, u32Shared(f.leaseSeconds));
    o.set(Opt.RenewalTime, u32Shared(Math.floor(f.leaseSeconds / 2)));
    o.set(Opt.RebindingTime, u32Shared(Math.floor((f.leaseSeconds * 7) / 8)));
  }
  o.set(Opt.SubnetMask, u32Shared(subnet.net.mask));
  o.set(Opt.BroadcastAddress, u32Shared(subnet.net.broadcast));
  let fields: ReturnType<typeof fieldsOf> | undefined;
  const operator = reservation?.options.length ? [...subnet.options, ...reservation.options] : subnet.options;
  for (const opt of operator) {
    try {
      let v = opt.value;
      if (typeof v === 'string' && v.includes('{{')) {
        fields ??= fieldsOf(f);
        v = substituteFields(v, fields);
        // A rendered value is checked and normalised as a written one is (a template rendering "True" sends 1).
        const checked = checkOptionValue(opt.code, v);
        if (!checked.ok) throw new TypeError(checked.message);
        v = checked.value;
      }
      if (v === '') {
        o.delete(opt.code);
        continue;
      }
      o.set(opt.code, encodeOptionValue(opt.code, v));
    } catch (err) {
      f.warnOnce(
        `opt-${subnet.name}-${opt.code}`,
        { subnet: subnet.name, code: opt.code },
        `dhcp: option not sent: ${(err as Error).message}`,
      );
    }
  }
  if (!o.has(Opt.Hostname) && f.machine?.name) o.set(Opt.Hostname, Buffer.from(f.machine.name));
  // RFC 2131 table 3: siaddr is the next server to use; a configured one is sent to every client, PXE or not.
  const next = reservation?.nextServer ?? subnet.nextServer;
  if (next) r.siaddr = next;
}

/** The boot decision in a full-mode reply: next server, boot file (field and option 67), the decision's options. */
export function applyBoot(r: DhcpPacket, d: Extract<BootDecision, { boot: true }>): void {
  r.siaddr = d.nextServer;
  r.file = d.filename.length <= 127 ? d.filename : '';
  r.options.set(Opt.BootfileName, Buffer.from(d.filename));
  for (const bo of d.options) r.options.set(bo.code, bo.value);
}

/** A NAK (RFC 2131 table 3): no addresses, no lease times, the reason in option 56. */
export function nakReply(req: DhcpPacket, server: string, why: string): DhcpPacket {
  const n = baseReply(req, MessageType.NAK, server);
  n.options.set(Opt.Message, Buffer.from(why));
  // RFC 2131 4.1: a relay must broadcast a NAK to the client.
  if (req.giaddr !== '0.0.0.0') n.flags |= 0x8000;
  return n;
}

/**
 * The reply's bytes: RFC 3046 2.2 relay information echoed to a relay, RFC 6842 client identifier echoed
 * (`echoClientId`: not by the PXE boot server), the relay's RFC 5107 server identifier override as option 54
 * (`serverIdOverride`, from a relayed request's 82.11), options in the client's order, sized to its option 57
 * (overloading file and sname when they are free, RFC 2132 9.3).
 */
export function finishReply(
  r: DhcpPacket,
  req: DhcpPacket,
  echoClientId: boolean,
  serverIdOverride?: string,
): { buf: Buffer; dropped: number[] } {
  const o82 = req.options.get(Opt.RelayAgentInfo);
  if (o82 && req.giaddr !== '0.0.0.0') r.options.set(Opt.RelayAgentInfo, o82);
  // RFC 5107 5: the client sees the relay as its server and unicasts its RENEWs there; the reply itself still
  // goes to giaddr (the delivery is unchanged).
  if (serverIdOverride && req.giaddr !== '0.0.0.0' && r.options.has(Opt.ServerId))
    r.options.set(Opt.ServerId, ipBytes(serverIdOverride));
  const cid = req.options.get(Opt.ClientId);
  if (cid && echoClientId) r.options.set(Opt.ClientId, cid);
  const mms = req.options.get(Opt.MaxMessageSize);
  // RFC 2132 9.8: the options in the order the client's option 55 lists them (the encoder's optionOrder).
  return encodeWithReport(r, mms?.length === 2 ? mms.readUInt16BE(0) : 576, req.options.get(Opt.ParamRequestList));
}
