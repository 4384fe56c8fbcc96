/**
 * proxyDHCP (PXE spec 2.1, "ProxyDHCP"): beside another DHCP server, answer PXE clients with boot information
 * only: an OFFER on port 67 without yiaddr, and an ACK on port 4011 to the client's boot-server REQUEST.
 *
 * What firmware needs, from ../shared/lab captures against dnsmasq (proxy-uefi-native-pxe.pcap,
 * proxy-bios-ipxe.pcap): OVMF's own PXE takes a proxy OFFER carrying only 53, 54, 60 "PXEClient", 97 (echoed)
 * and siaddr, then REQUESTs port 4011 of siaddr from port 4011 and boots the file named in that ACK
 * (edk2 ignores a boot file in the proxy OFFER itself, the symptom behind edk2 bug 469 / pixiecore issue 43).
 * iPXE also REQUESTs 4011 after its DHCPACK and boots the file of that reply, so the 4011 ACK always carries it.
 */
import type { BootDecision } from '../boot/decide.js';
import { decodeSubOptions, encodeSubOptions, MessageType, Opt } from './options.js';
import { type DhcpPacket, emptyPacket } from './packet.js';

export function proxyOffer(req: DhcpPacket, server: string, d: Extract<BootDecision, { boot: true }>): DhcpPacket {
  const r = replyBase(req, server);
  r.options.set(Opt.MessageType, Buffer.from([MessageType.OFFER]));
  r.options.set(Opt.ServerId, ipBuf(server));
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
export function proxyAck(req: DhcpPacket, server: string, d: Extract<BootDecision, { boot: true }>): DhcpPacket {
  const r = replyBase(req, server);
  r.ciaddr = req.ciaddr;
  r.sname = server;
  r.file = d.filename;
  r.options.set(Opt.MessageType, Buffer.from([MessageType.ACK]));
  r.options.set(Opt.ServerId, ipBuf(server));
  r.options.set(Opt.VendorClass, Buffer.from('PXEClient'));
  const uuid = req.options.get(Opt.ClientUuid);
  if (uuid) r.options.set(Opt.ClientUuid, uuid);
  // PXE spec 2.2.7: echo the boot item (43.71) the client asked for, layer 0.
  const v43 = req.options.get(Opt.VendorSpecific);
  const item = v43 ? decodeSubOptions(v43)?.get(71) : undefined;
  if (item && item.length === 4) r.options.set(Opt.VendorSpecific, encodeSubOptions([[71, item]]));
  return r;
}

function replyBase(req: DhcpPacket, server: string): DhcpPacket {
  const r = emptyPacket(2);
  r.htype = req.htype;
  r.hlen = req.hlen;
  r.xid = req.xid;
  r.flags = req.flags;
  r.giaddr = req.giaddr;
  r.chaddr = req.chaddr;
  r.siaddr = server;
  return r;
}

const ipBuf = (ip: string) => Buffer.from(ip.split('.').map(Number));
