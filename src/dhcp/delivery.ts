/**
 * Where a server reply goes (RFC 2131 4.1), as named kinds: the state machine names one, the connection layer
 * (connection.ts) turns it into an address and port. Kept apart from both so the rule is one function.
 */
import { type DhcpPacket, isBroadcast } from './packet.js';

export type Delivery =
  /** Relayed request: to giaddr at the relay port (the relay forwards it). */
  | 'relay'
  /** To the limited broadcast at the client port: broadcast flag set, no address yet, or a NAK. */
  | 'broadcast'
  /** The client has an address (RENEWING, REBINDING, INFORM): unicast to ciaddr. */
  | 'unicast-ciaddr'
  /**
   * Broadcast flag clear and no address yet: unicast to yiaddr at chaddr, which needs an ARP entry made for it
   * first (as dnsmasq does); broadcast when one cannot be made.
   */
  | 'unicast-chaddr-arp'
  /** The request's source address at the client port (an INFORM without ciaddr). */
  | 'unicast-source'
  /** The request's source address and port: the PXE boot server's ACK on 4011. */
  | 'back-to-sender';

/** RFC 2131 4.1 for an OFFER, ACK or NAK of the address server. */
export function deliveryFor(req: DhcpPacket, reply: DhcpPacket, nak: boolean): Delivery {
  if (req.giaddr !== '0.0.0.0') return 'relay';
  if (nak) return 'broadcast';
  if (req.ciaddr !== '0.0.0.0') return 'unicast-ciaddr';
  if (isBroadcast(req) || reply.yiaddr === '0.0.0.0') return 'broadcast';
  return 'unicast-chaddr-arp';
}
