/**
 * DHCP option codes, their value types (RFC 2132, RFC 4578 for PXE, iPXE's 175) and the conversions between
 * typed values and wire bytes. Knows nothing about leases or booting.
 */

import { OPTION_SPECS as OPTION_TYPES } from '../model/dhcp-option-values.js';

export const Opt = {
  Pad: 0,
  SubnetMask: 1,
  Router: 3,
  DnsServers: 6,
  Hostname: 12,
  DomainName: 15,
  BroadcastAddress: 28,
  NtpServers: 42,
  VendorSpecific: 43,
  RequestedIp: 50,
  LeaseTime: 51,
  Overload: 52,
  MessageType: 53,
  ServerId: 54,
  ParamRequestList: 55,
  Message: 56,
  MaxMessageSize: 57,
  RenewalTime: 58,
  RebindingTime: 59,
  VendorClass: 60,
  ClientId: 61,
  TftpServerName: 66,
  BootfileName: 67,
  UserClass: 77,
  RelayAgentInfo: 82,
  ClientArch: 93,
  ClientNdi: 94,
  ClientUuid: 97,
  DomainSearch: 119,
  ClasslessRoutes: 121,
  Ipxe: 175,
  End: 255,
} as const;

export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;
export type MessageTypeName = keyof typeof MessageType;
export const messageTypeName = (n: number | undefined): MessageTypeName | undefined =>
  (Object.keys(MessageType) as MessageTypeName[]).find((k) => MessageType[k] === n);

// RFC 2132 (and the PXE/iPXE/site options Plinth knows): how operators write each value. One table, with the
// constraints the API checks values against when they are written (src/model/dhcp-option-values.ts).
export { OPTION_SPECS as OPTION_TYPES, type OptionType } from '../model/dhcp-option-values.js';

export const optionName = (code: number): string => OPTION_TYPES[code]?.name ?? `option-${code}`;

const ipRe = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function ipBytes(ip: string): Buffer {
  const m = ipRe.exec(ip.trim());
  if (!m || m.slice(1).some((p) => Number(p) > 255)) throw new TypeError(`'${ip}' is not an IPv4 address`);
  return Buffer.from(m.slice(1).map(Number));
}

export const bytesIp = (b: Buffer, off = 0): string => `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;

/**
 * Operator-written value -> wire bytes, by the option's type. Unknown codes: text is sent as is, a string
 * starting with `hex:` as raw bytes, numbers as u32, arrays of numbers as bytes. Throws a TypeError whose
 * message says what to write instead (callers validate config with it).
 */
export function encodeOptionValue(code: number, value: string | number | (string | number)[]): Buffer {
  if (typeof value === 'string' && value.startsWith('hex:')) {
    const hex = value.slice(4).replace(/[:\s]/g, '');
    if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new TypeError(`option ${code}: '${value}' is not hex bytes`);
    return Buffer.from(hex, 'hex');
  }
  const type = OPTION_TYPES[code]?.type;
  const list = Array.isArray(value)
    ? value
    : typeof value === 'string' && /[,\s]/.test(value)
      ? value.split(/[,\s]+/).filter(Boolean)
      : [value];
  const num = (v: string | number): number => {
    const n = typeof v === 'number' ? v : Number(v);
    if (!Number.isInteger(n)) throw new TypeError(`option ${code} (${optionName(code)}): '${v}' is not an integer`);
    return n;
  };
  const ints = (size: 1 | 2 | 4, signed = false): Buffer => {
    const b = Buffer.alloc(list.length * size);
    list.forEach((v, i) => {
      const n = num(v);
      const max = 2 ** (size * 8);
      if (signed ? n < -(max / 2) || n >= max / 2 : n < 0 || n >= max) {
        throw new TypeError(`option ${code} (${optionName(code)}): ${n} does not fit in ${size * 8} bits`);
      }
      if (size === 1) b.writeUInt8(n, i);
      else if (size === 2) b.writeUInt16BE(n, i * 2);
      else if (signed) b.writeInt32BE(n, i * 4);
      else b.writeUInt32BE(n, i * 4);
    });
    return b;
  };
  switch (type) {
    case 'ip':
    case 'ips':
      return Buffer.concat(list.map((v) => ipBytes(String(v))));
    case 'u8':
    case 'bool':
      return ints(1);
    case 'u16':
    case 'u16s':
      return ints(2);
    case 'u32':
      return ints(4);
    case 'i32':
      return ints(4, true);
    case 'text':
      return Buffer.from(Array.isArray(value) ? value.join(',') : String(value), 'utf8');
    default:
      if (typeof value === 'string') return Buffer.from(value, 'utf8');
      if (typeof value === 'number') return ints(4);
      return ints(1);
  }
}

/** Wire bytes -> a readable value for logs, events and golden tests. */
export function decodeOptionValue(code: number, data: Buffer): string | number | number[] | string[] {
  const type = OPTION_TYPES[code]?.type;
  switch (type) {
    case 'ip':
      return data.length === 4 ? bytesIp(data) : data.toString('hex');
    case 'ips':
      if (data.length % 4 !== 0) return data.toString('hex');
      return Array.from({ length: data.length / 4 }, (_, i) => bytesIp(data, i * 4));
    case 'u8':
    case 'bool':
      return data.length === 1 ? data[0]! : data.toString('hex');
    case 'u16':
      return data.length === 2 ? data.readUInt16BE(0) : data.toString('hex');
    case 'u32':
      return data.length === 4 ? data.readUInt32BE(0) : data.toString('hex');
    case 'i32':
      return data.length === 4 ? data.readInt32BE(0) : data.toString('hex');
    case 'u16s':
      if (data.length % 2 !== 0) return data.toString('hex');
      return Array.from({ length: data.length / 2 }, (_, i) => data.readUInt16BE(i * 2));
    case 'text':
      return data.toString('latin1');
    default:
      return code === 55 ? [...data] : data.toString('hex');
  }
}

/** Sub-options of an encapsulated option (43 PXE, 175 iPXE, 82 relay agent): code/length/value until 255. */
export function decodeSubOptions(data: Buffer): Map<number, Buffer> | undefined {
  const out = new Map<number, Buffer>();
  let i = 0;
  while (i < data.length) {
    const code = data[i]!;
    if (code === 0) {
      i++;
      continue;
    }
    if (code === 255) break;
    if (i + 1 >= data.length) return undefined;
    const len = data[i + 1]!;
    if (i + 2 + len > data.length) return undefined;
    out.set(code, data.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  return out;
}

/** Relay agent information (82) sub-options the server acts on. */
export const RelaySub = { CircuitId: 1, RemoteId: 2, LinkSelection: 5, ServerIdOverride: 11 } as const;

/**
 * What a relay asks of the server in option 82: RFC 3527 link selection (sub-option 5, the client's link, so
 * its subnet, when giaddr is not on it) and RFC 5107 server identifier override (sub-option 11, the address
 * the client must see as option 54: the relay's own, so RENEWs come through it). Undefined when neither is
 * there as a valid non-zero address; a malformed option 82 yields neither (it is still echoed, RFC 3046 2.2).
 */
export type RelayInfo = { linkSelection?: string; serverIdOverride?: string };

export function relayInfo(o82: Buffer | undefined): RelayInfo | undefined {
  if (!o82) return undefined;
  const subs = decodeSubOptions(o82);
  if (!subs) return undefined;
  const addr = (b: Buffer | undefined) => (b?.length === 4 && b.readUInt32BE(0) !== 0 ? bytesIp(b) : undefined);
  const linkSelection = addr(subs.get(RelaySub.LinkSelection));
  const serverIdOverride = addr(subs.get(RelaySub.ServerIdOverride));
  if (!linkSelection && !serverIdOverride) return undefined;
  return { ...(linkSelection ? { linkSelection } : {}), ...(serverIdOverride ? { serverIdOverride } : {}) };
}

export function encodeSubOptions(subs: [number, Buffer][], end = true): Buffer {
  const parts: Buffer[] = [];
  for (const [code, v] of subs) parts.push(Buffer.from([code, v.length]), v);
  if (end) parts.push(Buffer.from([255]));
  return Buffer.concat(parts);
}

/**
 * Option 77 user classes. RFC 3004 wants length-prefixed entries, but iPXE (and most PXE ROMs) send the bare
 * string "iPXE" (see ../shared/lab captures): accept both, bare first when it reads as printable text.
 */
export function decodeUserClass(data: Buffer): string[] {
  const text = data.toString('latin1');
  if (/^[\x20-\x7e]+$/.test(text) && !(data[0]! > 0 && data[0]! + 1 === data.length && data[0]! < 32)) return [text];
  const out: string[] = [];
  let i = 0;
  while (i < data.length) {
    const len = data[i]!;
    if (len === 0 || i + 1 + len > data.length) return [text];
    out.push(data.subarray(i + 1, i + 1 + len).toString('latin1'));
    i += 1 + len;
  }
  return out;
}

/** RFC 4578 2.3: option 94, the client's network interface identifier (type 1 = UNDI, major, minor). */
export function decodeNdi(data: Buffer): { type: number; major: number; minor: number } | undefined {
  return data.length === 3 ? { type: data[0]!, major: data[1]!, minor: data[2]! } : undefined;
}

/** RFC 4578 2.5: option 97, type 0 followed by a 16-byte GUID. */
export function decodeUuid(data: Buffer): string | undefined {
  if (data.length !== 17 || data[0] !== 0) return undefined;
  const h = data.subarray(1).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * `{{path}}` field substitution in option values ({{mac}}, {{address}}, {{machine.name}}, {{machine.params.x}}):
 * no filters, no tags, not Liquid; a missing field becomes ''.
 */
export function substituteFields(tpl: string, ctx: Record<string, unknown>): string {
  return tpl.replace(/\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g, (_m, path: string) => {
    let v: unknown = ctx;
    for (const part of path.split('.')) {
      if (v === null || typeof v !== 'object') return '';
      v = (v as Record<string, unknown>)[part];
    }
    return v === undefined || v === null ? '' : String(v);
  });
}
