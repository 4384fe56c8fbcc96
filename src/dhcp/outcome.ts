/**
 * What the state machine (state-machine.ts) answers for one request: a reply with its delivery kind and the stats
 * counter it adds to, or silence with a reason.
 */
import type { BootChoice, BootOffer } from './boot.js';
import type { Delivery } from './delivery.js';
import type { DhcpPacket } from './packet.js';
import type { finishReply } from './reply.js';

/** The stats counter an outcome adds one to. */
export type Counter =
  | 'offers'
  | 'acks'
  | 'naks'
  | 'informs'
  | 'proxyOffers'
  | 'proxyAcks'
  | 'declines'
  | 'releases'
  | 'ignored';

export type Reply = {
  reply: DhcpPacket;
  delivery: Delivery;
  count: Counter;
  /** The boot this reply carries, and the offer to hand to onBoot. */
  boot?: { choice: BootChoice; offer: BootOffer };
  /** A 4011 REQUEST from the address it names: evidence the MAC is there (`proxy.acked`, after the send). */
  proxyAcked?: { address: string; subnet: string };
  /** The reply already finished for the wire (finishReply), when the request said how (`DhcpRequest.wire`). */
  wire?: Wire;
  /** The store sent it the moment its lease was durable (DhcpRequest.acks): only the bookkeeping is left. */
  sent?: boolean;
};
export type Wire = ReturnType<typeof finishReply>;
export type Silence = { reply?: undefined; reason: string; count?: Counter };
export type Outcome = Reply | Silence;
