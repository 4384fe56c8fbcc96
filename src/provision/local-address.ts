import { networkInterfaces } from 'node:os';
import { cidrContains } from '../model/common.js';

/** Interface addresses, re-read at most every few seconds: each TFTP render asks, and under descriptor
 * exhaustion os.networkInterfaces() throws EMFILE (then the last good list is kept). */
const IFACE_TTL_MS = 5_000;
let ifaces: { at: number; list: { address: string; cidr: string }[] } | undefined;
function interfaceAddresses(now = Date.now()): { address: string; cidr: string }[] {
  if (ifaces && now - ifaces.at < IFACE_TTL_MS) return ifaces.list;
  try {
    const list: { address: string; cidr: string }[] = [];
    for (const addrs of Object.values(networkInterfaces()))
      for (const a of addrs ?? [])
        if (a.family === 'IPv4' && !a.internal && a.cidr) list.push({ address: a.address, cidr: a.cidr });
    ifaces = { at: now, list };
  } catch {
    // EMFILE and friends: keep answering from what we knew; try again after the TTL.
    ifaces = { at: now, list: ifaces?.list ?? [] };
  }
  return ifaces.list;
}

/** The local IPv4 address on the client's subnet: what "Plinth's address" is for that client. */
export function localAddressFor(client: string): string | undefined {
  for (const a of interfaceAddresses()) if (cidrContains(a.cidr, client)) return a.address;
  return undefined;
}
