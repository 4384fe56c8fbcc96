/**
 * IPv4 conversions for the packet path: a dotted quad to a number without split/map (several per packet),
 * a number to a dotted quad, membership of a parsed network. Anything unusual goes to the model's parser.
 */
import { ipToInt } from '../model/common.js';

export function ipInt(ip: string): number {
  let n = 0;
  let part = 0;
  let dots = 0;
  let digits = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || part > 255) return ipToInt(ip);
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
    } else return ipToInt(ip);
  }
  if (dots !== 3 || digits === 0 || part > 255) return ipToInt(ip);
  return n * 256 + part;
}

export const ipStr = (n: number): string => `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;

/** Whether an address (as a number) is in a network parsed by parseCidr. */
export const inNet = (net: { mask: number; network: number }, ip: number): boolean =>
  (ip & net.mask) >>> 0 === net.network;
