/**
 * proxyDHCP (PXE spec 2.1, "ProxyDHCP"): beside another DHCP server, answer PXE clients with boot information
 * only: an OFFER on port 67 without yiaddr, and an ACK on port 4011 to the client's boot-server REQUEST. Like
 * state-machine.ts, a function of the request returning a reply or silence; replies start from reply.ts's
 * baseReply.
 *
 * What firmware needs, from ../shared/lab captures against dnsmasq (proxy-uefi-native-pxe.pcap,
 * proxy-bios-ipxe.pcap): OVMF's own PXE takes a proxy OFFER carrying only 53, 54, 60 "PXEClient", 97 (echoed)
 * and siaddr, then REQUESTs port 4011 of siaddr from port 4011 and boots the file named in that ACK
 * (edk2 ignores a boot file in the proxy OFFER itself, the symptom behind edk2 bug 469 / pixiecore issue 43).
 * iPXE also REQUESTs 4011 after its DHCPACK and boots the file of that reply, so the 4011 ACK always carries it.
 */
import type { BootDecision } from '../boot/decide.js';
import { bootOffer, type Decide } from './boot.js';
import type { MachineLookup } from './machines.js';
import { decodeSubOptions, encodeSubOptions, MessageType, Opt } from './options.js';
import type { DhcpPacket } from './packet.js';
import { baseReply } from './reply.js';
import type { DhcpRequest, Outcome } from './state-machine.js';

export type ProxyEnv = { machines: MachineLookup; decide: Decide };

type Boot = Extract<BootDecision, { boot: true }>;

/** The proxy OFFER on port 67 (`server` is this server's address, `next` where the client fetches from). */
export function proxyOffer(req: DhcpPacket, server: string, next: string, d: Boot): DhcpPacket {
  const r = baseReply(req, MessageType.OFFER, server);
  r.siaddr = next;
  const http = d.options.find((o) => o.code === Opt.VendorClass);
  r.options.set(Opt.VendorClass, http ? http.value : Buffer.from('PXEClient'));
  const uuid = req.options.get(Opt.ClientUuid);
  if (uuid) r.options.set(Opt.ClientUuid, uuid);
  // UEFI HTTP Boot has no 4011 step: the URL must be in the offer. iPXE boots a file it finds in a proxy offer
  // without asking further (dhcp_has_pxeopts in its net/udp/dhcp.c), so it gets none: it then sends its
  // ProxyDHCPREQUEST to 4011 from its new address, and that exchange is the DHCP evidence binding its MAC to the
  // address (src/provision/trust.ts) without which its boot script carries no token and no secure params.
  if (http) r.file = d.filename;
  return r;
}

/** The ACK to a boot-server REQUEST on port 4011, sent back to the client's address and source port. */
export function proxyAck(req: DhcpPacket, server: string, next: string, d: Boot): DhcpPacket {
  const r = baseReply(req, MessageType.ACK, server);
  r.siaddr = next;
  r.ciaddr = req.ciaddr;
  r.sname = next;
  r.file = d.filename;
  r.options.set(Opt.VendorClass, Buffer.from('PXEClient'));
  const uuid = req.options.get(Opt.ClientUuid);
  if (uuid) r.options.set(Opt.ClientUuid, uuid);
  // PXE spec 2.2.7: echo the boot item (43.71) the client asked for, layer 0.
  const v43 = req.options.get(Opt.VendorSpecific);
  const item = v43 ? decodeSubOptions(v43)?.get(71) : undefined;
  if (item && item.length === 4) r.options.set(Opt.VendorSpecific, encodeSubOptions([[71, item]]));
  return r;
}

const vendorClass = (pkt: DhcpPacket) => pkt.options.get(Opt.VendorClass)?.toString('latin1') ?? '';

/** Port 67 of a proxy subnet: only DISCOVERs of PXE clients (PXEClient/HTTPClient) get an OFFER, never an address. */
export async function answerProxy(req: DhcpRequest, env: ProxyEnv): Promise<Outcome> {
  const { pkt, type, mac, subnet, server } = req;
  if (type !== MessageType.DISCOVER && type !== MessageType.REQUEST) return { reason: 'proxy: not a DISCOVER' };
  const vc = vendorClass(pkt);
  if (!vc.startsWith('PXEClient') && !vc.startsWith('HTTPClient'))
    return { reason: 'proxy: not a PXE client', count: 'ignored' };
  // The address server ACKs; the boot file comes from 4011.
  if (type === MessageType.REQUEST) return { reason: 'proxy: REQUEST for the address server' };
  const machine = await env.machines.lookup(mac);
  const next = subnet.nextServer ?? server;
  const choice = env.decide({ req: pkt, mac, machine, nextServer: next, mode: 'proxy' });
  if (!choice) return { reason: 'proxy: no boot for this client' };
  const r = proxyOffer(pkt, server, next, choice.decision);
  const delivery = pkt.giaddr !== '0.0.0.0' ? 'relay' : 'broadcast';
  return { reply: r, delivery, count: 'proxyOffers', boot: { choice, offer: bootOffer(choice, pkt.ciaddr) } };
}

/** Port 4011 (PXE boot server): the REQUEST (or INFORM) of a PXE client gets its boot file. */
export async function answerBootServer(req: DhcpRequest, env: ProxyEnv): Promise<Outcome> {
  const { pkt, type, mac, subnet, server } = req;
  if (type !== MessageType.REQUEST && type !== MessageType.INFORM) return { reason: 'boot server: not a REQUEST' };
  if (subnet.unmanaged) return { reason: 'boot server: unmanaged subnet' };
  if (!vendorClass(pkt).startsWith('PXEClient')) return { reason: 'boot server: not a PXE client', count: 'ignored' };
  const machine = await env.machines.lookup(mac);
  const next = subnet.nextServer ?? server;
  const choice = env.decide({ req: pkt, mac, machine, nextServer: next, mode: 'proxy' });
  if (!choice) return { reason: 'boot server: no boot for this client' };
  const r = proxyAck(pkt, server, next, choice.decision);
  // A client that asks 4011 from the address it names as its own (ciaddr) holds that address: evidence, like
  // lease.acked, that this MAC is at this address (the trust rule of issue 11; a proxy subnet has no leases).
  const held = type === MessageType.REQUEST && pkt.ciaddr !== '0.0.0.0' && pkt.ciaddr === req.source;
  return {
    reply: r,
    delivery: 'back-to-sender',
    count: 'proxyAcks',
    boot: { choice, offer: bootOffer(choice, pkt.ciaddr) },
    proxyAcked: held ? { address: pkt.ciaddr, subnet: subnet.name } : undefined,
  };
}
