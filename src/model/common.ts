import { z } from 'zod';

/** A MAC as operators write it; stored lower-case, colon-separated. */
export const Mac = z
  .string()
  .trim()
  .transform((s) => s.toLowerCase().replace(/-/g, ':'))
  .pipe(z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, 'expected a MAC address like 52:54:00:12:34:56'));

const ipv4Re = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
export const IPv4 = z.string().regex(ipv4Re, 'expected an IPv4 address like 10.66.0.10');

export const Cidr = z.string().refine((s) => {
  const [ip, len, ...rest] = s.split('/');
  return rest.length === 0 && ipv4Re.test(ip ?? '') && /^\d+$/.test(len ?? '') && Number(len) <= 32;
}, 'expected an IPv4 CIDR like 10.66.0.0/24');

/** Names used as keys in URLs: no slashes, no control characters, no surprises in a path segment. */
export const Name = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:@+-]*$/, 'use letters, digits and . _ : @ + - (starting with a letter or digit)');

export const Timestamp = z.string().datetime({ offset: true });

export const Params = z.record(z.string(), z.unknown());

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
