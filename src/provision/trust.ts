import type { Machine } from '../model/machine.js';
import type { Store } from '../store/store.js';
import type { DhcpEvidence } from './evidence.js';

/**
 * The one rule, for every transport, for "is this request the machine?": only the machine may receive its
 * secure params and a machine token. A request is the machine only with evidence that binds it:
 *   (a) a token: the machine's own, or an admin's;
 *   (b) a fresh DHCP acknowledgement from this daemon binding one of the machine's MACs to the source address;
 *   (c) over HTTP only, the source address an active lease in the store holds for one of its MACs (this survives
 *       a restart; TCP's handshake means the source address was not forged blind).
 * Never the machine record's `address` (anyone can be first to claim it), never a bare source address over
 * TFTP (UDP sources are forged for free), never trust on first use.
 */
export type Transport = 'http' | 'tftp';
export type TrustQuery = {
  transport: Transport;
  /** The request's source address (IPv4; an IPv4-mapped IPv6 form is accepted). */
  source: string;
  machine: Pick<Machine, 'uuid' | 'macs'>;
  /** A bearer or ?token= value, if the request carried one. */
  token?: string;
};
export type TrustBy = 'machine-token' | 'admin-token' | 'dhcp-ack' | 'proxy-ack' | 'lease';
export type TrustVerdict = { machine: true; by: TrustBy } | { machine: false; why: string };

/** What a token is worth: its role and, for a machine token, whose. Role names beyond these two are not enough. */
export type TokenCheck = (token: string) => Promise<{ role: string; machine?: string } | null>;

export type TrustDeps = { store: Store; evidence: DhcpEvidence; checkToken: TokenCheck; now?: () => number };
export type Trust = ReturnType<typeof trustRule>;

export const sourceAddress = (ip: string | undefined) => (ip ?? '').replace(/^::ffff:/, '');

/** The token a request carries: `Authorization: Bearer <t>`, else `?token=<t>` (busybox wget, iPXE URLs). */
export function requestToken(authorization: string | undefined, query: unknown): string | undefined {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
  if (bearer) return bearer;
  const q = (query as { token?: unknown } | undefined)?.token;
  return typeof q === 'string' && q.length > 0 && q.length <= 512 ? q : undefined;
}

export function trustRule(deps: TrustDeps) {
  const now = deps.now ?? Date.now;

  /** Rules (b) and (c): DHCP from this daemon binds one of `macs` to `source`. Discovery asks this too. */
  const dhcpBinds = async (
    macs: readonly string[],
    source: string,
    transport: Transport,
  ): Promise<TrustBy | undefined> => {
    const addr = sourceAddress(source);
    const hit = deps.evidence.binds(macs, addr);
    if (hit) return hit.via === 'proxy' ? 'proxy-ack' : 'dhcp-ack';
    if (transport !== 'http' || macs.length === 0) return undefined;
    const lease = (await deps.store.get('leases', addr))?.doc as
      | { mac?: string; state?: string; expiresAt?: string }
      | undefined;
    if (lease?.state === 'bound' && lease.mac && macs.includes(lease.mac) && Date.parse(lease.expiresAt ?? '') > now())
      return 'lease';
    return undefined;
  };

  return {
    dhcpBinds,
    async isTheMachine(q: TrustQuery): Promise<TrustVerdict> {
      if (q.token) {
        const p = await deps.checkToken(q.token);
        if (p?.role === 'admin') return { machine: true, by: 'admin-token' };
        if (p?.role === 'machine' && p.machine === q.machine.uuid) return { machine: true, by: 'machine-token' };
        // A wrong or foreign token proves nothing either way: the DHCP evidence may still hold.
      }
      const by = await dhcpBinds(q.machine.macs ?? [], q.source, q.transport);
      if (by) return { machine: true, by };
      return {
        machine: false,
        why:
          q.transport === 'tftp'
            ? `no fresh DHCP acknowledgement from this daemon binds a MAC of this machine to ${sourceAddress(q.source)}`
            : `no token, and no DHCP acknowledgement or active lease binds a MAC of this machine to ${sourceAddress(q.source)}`,
      };
    },
  };
}
