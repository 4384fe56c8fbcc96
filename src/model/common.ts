import { z } from 'zod';

/** Why `mac` (lower-case, colon-separated) cannot be a NIC's own address, or undefined if it can. */
export function notNicMac(mac: string): string | undefined {
  if (mac === 'ff:ff:ff:ff:ff:ff') return `${mac} is the broadcast address, not a NIC's MAC`;
  if (mac === '00:00:00:00:00:00') return `${mac} is not a NIC's MAC (all zero)`;
  // IEEE 802: the group bit (lowest bit of the first octet) marks multicast; a NIC never sends from one.
  if (Number.parseInt(mac.slice(0, 2), 16) & 1)
    return `${mac} is a multicast address (the first octet is odd), not a NIC's MAC`;
  return undefined;
}

/**
 * A MAC as operators write it; stored lower-case, colon-separated. Syntax only: what the store holds is read with
 * it (a reservation stored before the NIC rule below must keep working), and DHCP clients send what they send.
 */
export const MacSyntax = z
  .string()
  .max(64)
  .trim()
  .transform((s) => s.toLowerCase().replace(/-/g, ':'))
  .pipe(z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, 'expected a MAC address like 52:54:00:12:34:56'));

/**
 * A NIC's own MAC (a request naming a machine by MAC): broadcast, zero and multicast refused. New MACs written
 * through the API get the same rule in the resources' checks (inventory/resources.ts).
 */
export const Mac = MacSyntax.superRefine((mac, ctx) => {
  const why = notNicMac(mac);
  if (why) ctx.addIssue({ code: 'custom', message: why });
});

const ipv4Re = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
export const IPv4 = z.string().regex(ipv4Re, 'expected an IPv4 address like 10.66.0.10');

export const Cidr = z
  .string()
  .max(64)
  .refine((s) => {
    const [ip, len, ...rest] = s.split('/');
    return rest.length === 0 && ipv4Re.test(ip ?? '') && /^\d+$/.test(len ?? '') && Number(len) <= 32;
  }, 'expected an IPv4 CIDR like 10.66.0.0/24');

/**
 * Why a CIDR cannot name a network (10.0.0.5/24 is an address: the operator meant the network or a host, so
 * neither is guessed), or undefined. Checked when a subnet is written (inventory/resources.ts), not when one
 * stored earlier is read.
 */
export function hostBitsSet(cidr: string): string | undefined {
  const c = parseCidr(cidr);
  if (ipToInt(cidr.split('/')[0]!) === c.network) return undefined;
  return `subnet ${cidr} has host bits set; did you mean ${intToIp(c.network)}/${c.prefix}?`;
}

/** Names used as keys in URLs: no slashes, no control characters, no surprises in a path segment. */
export const Name = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:@+-]*$/, 'use letters, digits and . _ : @ + - (starting with a letter or digit)');

export const Timestamp = z.string().datetime({ offset: true });

/** How deep and how large free-form JSON (params, inventory, a param's schema) may be. */
export const JSON_LIMITS = { depth: 32, bytes: 256 * 1024, keys: 1024 };

/**
 * Free-form JSON, bounded: SQLite's JSON functions give up past 1000 levels (a 5,000-deep value was a 503 from
 * the store), and every render copies params to a worker. Checked without recursion, so depth cannot overflow.
 */
export function jsonBounds(what: string, limits = JSON_LIMITS) {
  return (v: Record<string, unknown>, ctx: z.RefinementCtx) => {
    if (Object.keys(v).length > limits.keys) {
      ctx.addIssue({ code: 'custom', message: `${what} has more than ${limits.keys} keys` });
      return;
    }
    const stack: [unknown, number][] = [[v, 1]];
    while (stack.length) {
      const [x, d] = stack.pop()!;
      if (x === null || typeof x !== 'object') continue;
      if (d > limits.depth) {
        ctx.addIssue({ code: 'custom', message: `${what} is nested deeper than ${limits.depth} levels` });
        return;
      }
      for (const c of Object.values(x)) if (c !== null && typeof c === 'object') stack.push([c, d + 1]);
    }
    const size = Buffer.byteLength(JSON.stringify(v));
    if (size > limits.bytes) {
      ctx.addIssue({ code: 'custom', message: `${what} is ${size} bytes as JSON; at most ${limits.bytes} are kept` });
    }
  };
}

export const Params = z.record(z.string().max(128), z.unknown()).superRefine(jsonBounds('params'));

export function ipToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

export function intToIp(n: number): string {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function parseCidr(cidr: string): { network: number; prefix: number; mask: number; broadcast: number } {
  const [ip, len] = cidr.split('/');
  const prefix = Number(len);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const network = (ipToInt(ip!) & mask) >>> 0;
  return { network, prefix, mask, broadcast: (network | (~mask >>> 0)) >>> 0 };
}

export function cidrContains(cidr: string, ip: string): boolean {
  const c = parseCidr(cidr);
  return (ipToInt(ip) & c.mask) >>> 0 === c.network;
}
