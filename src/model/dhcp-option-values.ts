/**
 * What each DHCP option's value is (RFC 2132; RFC 3397, 3442, 4578 and the site options Plinth knows) and the
 * check of an operator's value against it. A subnet or reservation is validated with it when written (a value a
 * server must refuse is a 400 naming the option), and each accepted value is stored in one canonical spelling,
 * the one the encoder (src/dhcp/options.ts) turns into wire bytes, so that whatever is accepted is also sent.
 * Data and pure functions only: the model does not depend on the DHCP code; the DHCP code may read this table.
 */

/** How an option's value is written by operators and laid out on the wire. */
export type OptionType = 'ip' | 'ips' | 'u8' | 'u16' | 'u32' | 'i32' | 'text' | 'bool' | 'u16s' | 'bytes';

/**
 * One option: its name, type and the constraints its RFC puts on the value. `min`/`max`/`oneOf` bound an integer
 * (each member of a u16 list); `rule` names a structure the type alone does not say.
 */
export type OptionSpec = {
  name: string;
  type: OptionType;
  min?: number;
  max?: number;
  oneOf?: readonly number[];
  rule?: 'mask' | 'filter-pairs' | 'route-pairs' | 'domain-search' | 'classless-routes';
};

// RFC 2132 (and RFC 3397, 3442, 4578, 5071, 8910, iPXE's 175): the `min`s are the RFC's own ("minimum legal
// value is 68", "MUST be greater than or equal to 576", ...).
export const OPTION_SPECS: Record<number, OptionSpec> = {
  1: { name: 'subnet-mask', type: 'ip', rule: 'mask' },
  2: { name: 'time-offset', type: 'i32' },
  3: { name: 'router', type: 'ips' },
  4: { name: 'time-servers', type: 'ips' },
  5: { name: 'name-servers', type: 'ips' },
  6: { name: 'dns-servers', type: 'ips' },
  7: { name: 'log-servers', type: 'ips' },
  8: { name: 'cookie-servers', type: 'ips' },
  9: { name: 'lpr-servers', type: 'ips' },
  10: { name: 'impress-servers', type: 'ips' },
  11: { name: 'resource-location-servers', type: 'ips' },
  12: { name: 'hostname', type: 'text' },
  13: { name: 'boot-size', type: 'u16' },
  14: { name: 'merit-dump', type: 'text' },
  15: { name: 'domain-name', type: 'text' },
  16: { name: 'swap-server', type: 'ip' },
  17: { name: 'root-path', type: 'text' },
  18: { name: 'extensions-path', type: 'text' },
  19: { name: 'ip-forwarding', type: 'bool' },
  20: { name: 'non-local-source-routing', type: 'bool' },
  21: { name: 'policy-filter', type: 'ips', rule: 'filter-pairs' },
  22: { name: 'max-dgram-reassembly', type: 'u16', min: 576 },
  23: { name: 'default-ttl', type: 'u8', min: 1 },
  24: { name: 'path-mtu-aging-timeout', type: 'u32' },
  25: { name: 'path-mtu-plateau-table', type: 'u16s', min: 68 },
  26: { name: 'mtu', type: 'u16', min: 68 },
  27: { name: 'all-subnets-local', type: 'bool' },
  28: { name: 'broadcast-address', type: 'ip' },
  29: { name: 'perform-mask-discovery', type: 'bool' },
  30: { name: 'mask-supplier', type: 'bool' },
  31: { name: 'router-discovery', type: 'bool' },
  32: { name: 'router-solicitation-address', type: 'ip' },
  33: { name: 'static-routes', type: 'ips', rule: 'route-pairs' },
  34: { name: 'trailer-encapsulation', type: 'bool' },
  35: { name: 'arp-cache-timeout', type: 'u32' },
  36: { name: 'ieee802-3-encapsulation', type: 'bool' },
  37: { name: 'default-tcp-ttl', type: 'u8', min: 1 },
  38: { name: 'tcp-keepalive-interval', type: 'u32' },
  39: { name: 'tcp-keepalive-garbage', type: 'bool' },
  40: { name: 'nis-domain', type: 'text' },
  41: { name: 'nis-servers', type: 'ips' },
  42: { name: 'ntp-servers', type: 'ips' },
  43: { name: 'vendor-specific', type: 'bytes' },
  44: { name: 'netbios-name-servers', type: 'ips' },
  45: { name: 'netbios-dd-server', type: 'ips' },
  46: { name: 'netbios-node-type', type: 'u8', oneOf: [1, 2, 4, 8] },
  47: { name: 'netbios-scope', type: 'text' },
  48: { name: 'font-servers', type: 'ips' },
  49: { name: 'x-display-manager', type: 'ips' },
  50: { name: 'requested-ip', type: 'ip' },
  51: { name: 'lease-time', type: 'u32' },
  52: { name: 'overload', type: 'u8', oneOf: [1, 2, 3] },
  53: { name: 'message-type', type: 'u8', min: 1 },
  54: { name: 'server-id', type: 'ip' },
  55: { name: 'parameter-request-list', type: 'bytes' },
  56: { name: 'message', type: 'text' },
  57: { name: 'max-message-size', type: 'u16', min: 576 },
  58: { name: 'renewal-time', type: 'u32' },
  59: { name: 'rebinding-time', type: 'u32' },
  60: { name: 'vendor-class', type: 'text' },
  61: { name: 'client-id', type: 'bytes' },
  62: { name: 'nwip-domain-name', type: 'text' },
  64: { name: 'nisplus-domain-name', type: 'text' },
  65: { name: 'nisplus-servers', type: 'ips' },
  66: { name: 'tftp-server-name', type: 'text' },
  67: { name: 'bootfile-name', type: 'text' },
  68: { name: 'mobile-ip-home-agent', type: 'ips' },
  69: { name: 'smtp-servers', type: 'ips' },
  70: { name: 'pop-servers', type: 'ips' },
  71: { name: 'nntp-servers', type: 'ips' },
  72: { name: 'www-servers', type: 'ips' },
  73: { name: 'finger-servers', type: 'ips' },
  74: { name: 'irc-servers', type: 'ips' },
  75: { name: 'streettalk-servers', type: 'ips' },
  76: { name: 'streettalk-directory-assistance-servers', type: 'ips' },
  77: { name: 'user-class', type: 'bytes' },
  82: { name: 'relay-agent-info', type: 'bytes' },
  91: { name: 'client-last-transaction-time', type: 'u32' },
  92: { name: 'associated-ip', type: 'ips' },
  93: { name: 'client-arch', type: 'u16s' },
  94: { name: 'client-ndi', type: 'bytes' },
  97: { name: 'client-uuid', type: 'bytes' },
  114: { name: 'captive-portal', type: 'text' },
  118: { name: 'subnet-selection', type: 'ip' },
  119: { name: 'domain-search', type: 'bytes', rule: 'domain-search' },
  121: { name: 'classless-static-routes', type: 'bytes', rule: 'classless-routes' },
  150: { name: 'tftp-server-address', type: 'ips' },
  175: { name: 'ipxe-encap', type: 'bytes' },
  209: { name: 'pxelinux-config-file', type: 'text' },
  210: { name: 'pxelinux-path-prefix', type: 'text' },
  252: { name: 'wpad', type: 'text' },
};

/** A value as stored (after normalisation) and as the encoder takes it. */
export type OptionValue = string | number | (string | number)[];
export type CheckedValue = { ok: true; value: OptionValue } | { ok: false; message: string };

/** RFC 2132 2: one option carries at most 255 octets (longer values would need RFC 3396 splitting). */
const MAX_OPTION_BYTES = 255;
const ipRe = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** The placeholders src/dhcp/options.ts renderTemplate fills in ({{mac}}, {{machine.name}}, ...). */
const placeholderRe = /\{\{\s*[A-Za-z0-9_.-]+\s*\}\}/g;
type Range = readonly [lo: number, hi: number];
const INT: Record<'u8' | 'u16' | 'u32' | 'i32', Range> = {
  u8: [0, 0xff],
  u16: [0, 0xffff],
  u32: [0, 0xffffffff],
  i32: [-0x80000000, 0x7fffffff],
};

/** An unknown code, or the members of a byte list: no constraint beyond the integer's size. */
const ANY: OptionSpec = { name: '', type: 'bytes' };

/** Why a value is refused: thrown inside the checks, turned into `{ ok: false }` at the top. */
class Refused extends Error {}

/** The value quoted back in a message: JSON (control characters escaped), cut short (a value may be 4 KiB). */
const show = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
};
const label = (code: number, spec: OptionSpec | undefined) => `option ${code}${spec ? ` (${spec.name})` : ''}`;
const ipInt = (ip: string) => ip.split('.').reduce((n, p) => n * 256 + Number(p), 0);
const bytesIp = (b: Buffer, o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
/** A contiguous mask: its inverse is 2^n - 1. */
const isMask = (n: number) => {
  const inv = ~n >>> 0;
  return (inv & (inv + 1)) === 0;
};

/** What each type expects, in the words of the error message. */
function expects(spec: OptionSpec): string {
  const range = ([lo, hi]: Range) =>
    spec.oneOf ? `one of ${spec.oneOf.join(', ')}` : `an integer from ${spec.min ?? lo} to ${spec.max ?? hi}`;
  switch (spec.type) {
    case 'bool':
      return 'a boolean: true or false (also on/off, 1/0)';
    case 'ip':
      return spec.rule === 'mask' ? 'a subnet mask like 255.255.255.0 (contiguous ones)' : 'an IPv4 address';
    case 'ips':
      if (spec.rule === 'filter-pairs') return 'pairs of address and mask (address mask, ...)';
      if (spec.rule === 'route-pairs') return 'pairs of destination and router (destination router, ...)';
      return 'a list of IPv4 addresses (an array, or separated by commas or spaces)';
    case 'u16s':
      return `a list of integers from ${spec.min ?? 0} to 65535`;
    case 'text':
      return `text of 1 to ${MAX_OPTION_BYTES} bytes without control characters`;
    case 'bytes':
      if (spec.rule === 'domain-search') return 'hex:... bytes in RFC 3397 form (DNS-encoded names)';
      if (spec.rule === 'classless-routes') return 'hex:... bytes in RFC 3442 form (width, destination, router)';
      return "bytes: 'hex:...', a list of bytes 0-255, text, or an unsigned 32-bit integer";
    default:
      return range(INT[spec.type]);
  }
}

/** JSON booleans, 1/0, and the words ISC dhcpd (true/false/on/off) and Kea (true/false, 1/0) take, any case. */
function toBool(v: unknown): number {
  if (v === true || v === 1) return 1;
  if (v === false || v === 0) return 0;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (s === 'true' || s === 'on' || s === '1') return 1;
    if (s === 'false' || s === 'off' || s === '0') return 0;
  }
  throw new Refused();
}

function toInt(v: unknown, spec: OptionSpec, [lo, hi]: Range): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*[+-]?\d+\s*$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isInteger(n) || n < (spec.min ?? lo) || n > (spec.max ?? hi)) throw new Refused();
  if (spec.oneOf && !spec.oneOf.includes(n)) throw new Refused();
  return n;
}

/** A list as the encoder reads one: an array, or a string split at commas and white space. */
function members(v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  if (typeof v === 'string') return v.split(/[,\s]+/).filter(Boolean);
  return [v];
}

function checkAddresses(v: unknown, spec: OptionSpec): string[] {
  const list = members(v).map((m) => (typeof m === 'string' ? m.trim() : m));
  if (list.length === 0 || list.some((m) => typeof m !== 'string' || !ipRe.test(m))) throw new Refused();
  const ips = list as string[];
  if (ips.length * 4 > MAX_OPTION_BYTES) throw new Refused();
  if (spec.type === 'ip' && ips.length !== 1) throw new Refused();
  if (spec.rule === 'mask' && !isMask(ipInt(ips[0]!))) throw new Refused();
  if (spec.rule === 'filter-pairs' || spec.rule === 'route-pairs') {
    if (ips.length % 2) throw new Refused();
    for (let i = 0; i < ips.length; i += 2) {
      // RFC 2132 5.8: 0.0.0.0 is no static route destination. A policy filter's second address (5.3, a mask) is
      // not checked: ISC's Forge suite configures 199.199.199.1,50.50.50.1, and Kea and dhcpd take any address.
      if (spec.rule === 'route-pairs' && ips[i] === '0.0.0.0') throw new Refused();
    }
  }
  return ips;
}

/** RFC 3397: DNS-encoded names (RFC 1035 3.1), compression pointers only to earlier bytes. */
function domainSearchOk(b: Buffer): boolean {
  let i = 0;
  let nameLen = 0;
  while (i < b.length) {
    const len = b[i]!;
    if ((len & 0xc0) === 0xc0) {
      if (i + 1 >= b.length || (((len & 0x3f) << 8) | b[i + 1]!) >= i) return false;
      i += 2;
      nameLen = 0;
    } else if (len & 0xc0) return false;
    else if (len === 0) {
      i++;
      nameLen = 0;
    } else {
      nameLen += len + 1;
      i += len + 1;
      if (i > b.length || nameLen > 254) return false;
    }
  }
  return b.length > 0 && nameLen === 0 && i === b.length;
}

/** RFC 3442: routes of (width 0-32, ceil(width/8) destination octets, 4 router octets), nothing left over. */
function classlessRoutesOk(b: Buffer): boolean {
  let i = 0;
  while (i < b.length) {
    const w = b[i]!;
    if (w > 32) return false;
    i += 1 + Math.ceil(w / 8) + 4;
  }
  return b.length > 0 && i === b.length;
}

/** Raw bytes (`hex:...`) the encoder sends as they are: they must still be a value of the option's type. */
function checkRaw(b: Buffer, spec: OptionSpec): void {
  const size = { bool: 1, ip: 4, u8: 1, u16: 2, u32: 4, i32: 4 } as Partial<Record<OptionType, number>>;
  const fixed = size[spec.type];
  if (fixed !== undefined && b.length !== fixed) throw new Refused();
  if (spec.type !== 'bytes' && (b.length === 0 || b.length > MAX_OPTION_BYTES)) throw new Refused();
  switch (spec.type) {
    case 'bool':
      return void toBool(b[0]);
    case 'u8':
    case 'u16':
    case 'u32':
      return void toInt(b.readUIntBE(0, b.length), spec, INT[spec.type]);
    case 'i32':
      return void toInt(b.readInt32BE(0), spec, INT.i32);
    case 'ip':
    case 'ips':
      if (b.length % 4) throw new Refused();
      return void checkAddresses(
        Array.from({ length: b.length / 4 }, (_, i) => bytesIp(b, i * 4)),
        spec,
      );
    case 'u16s':
      if (b.length % 2) throw new Refused();
      for (let i = 0; i < b.length; i += 2) toInt(b.readUInt16BE(i), spec, INT.u16);
      return;
    case 'text':
      return;
    default:
      if (spec.rule === 'domain-search' && !domainSearchOk(b)) throw new Refused();
      if (spec.rule === 'classless-routes' && !classlessRoutesOk(b)) throw new Refused();
  }
}

function checkText(v: unknown): string {
  const s = Array.isArray(v) ? v.join(',') : typeof v === 'number' ? String(v) : v;
  if (typeof s !== 'string' || s.length === 0) throw new Refused();
  // A NUL or line break inside a name ends or splits it in a C client; RFC 2132 texts are NVT ASCII or UTF-8 names.
  if (/[\x00-\x1f\x7f]/.test(s) || Buffer.byteLength(s, 'utf8') > MAX_OPTION_BYTES) throw new Refused();
  return s;
}

/** `bytes` and unknown codes, as the encoder sends them: text as is, a number as a u32, a list as bytes. */
function checkBytes(v: unknown, spec: OptionSpec | undefined): OptionValue {
  const structured = spec?.rule === 'domain-search' || spec?.rule === 'classless-routes';
  if (typeof v === 'string' && !structured) return v;
  if (typeof v === 'number' && !structured) return toInt(v, ANY, INT.u32);
  if (!Array.isArray(v) || v.length === 0) throw new Refused();
  const bytes = v.map((m) => toInt(m, ANY, INT.u8));
  if (spec) checkRaw(Buffer.from(bytes), spec);
  return bytes;
}

function checkTyped(v: unknown, spec: OptionSpec | undefined): OptionValue {
  if (!spec || spec.type === 'bytes') return checkBytes(v, spec);
  const scalar = Array.isArray(v) && v.length === 1 && spec.type !== 'text' ? v[0] : v;
  switch (spec.type) {
    case 'bool':
      return toBool(scalar);
    case 'ip':
      return checkAddresses(scalar, spec)[0]!;
    case 'ips': {
      const ips = checkAddresses(v, spec);
      return ips.length === 1 ? ips[0]! : ips;
    }
    case 'u16s': {
      const list = members(v).map((m) => toInt(m, spec, INT.u16));
      if (list.length === 0 || list.length * 2 > MAX_OPTION_BYTES) throw new Refused();
      return list.length === 1 ? list[0]! : list;
    }
    case 'text':
      return checkText(v);
    default:
      return toInt(scalar, spec, INT[spec.type]);
  }
}

/**
 * Checks an operator's value for option `code` and returns it in the spelling that is stored and encoded:
 * booleans 1/0 (the RFC 2132 octet), integers as numbers, one address as a string and several as an array,
 * raw bytes as lower-case `hex:...`. Left as written: '' (the option is not sent, so a reservation can take
 * back a subnet's option) and a `{{...}}` template, rendered per client when the reply is built.
 */
export function checkOptionValue(code: number, value: unknown): CheckedValue {
  const spec = OPTION_SPECS[code];
  const refuse = (why?: string): CheckedValue => ({
    ok: false,
    message: `${label(code, spec)} is ${why ?? expects(spec ?? ANY)}; got ${show(value)}`,
  });
  if (value === '') return { ok: true, value };
  if (typeof value === 'string' && value.includes('{{')) {
    if (value.replace(placeholderRe, '').includes('{{')) {
      return refuse("a template whose every '{{' opens a placeholder like {{machine.name}}");
    }
    return { ok: true, value };
  }
  if (Array.isArray(value) && value.some((m) => typeof m === 'string' && m.includes('{{'))) {
    return refuse('a template only as a single string (members of a list are not rendered)');
  }
  try {
    if (typeof value === 'string' && value.startsWith('hex:')) {
      const hex = value.slice(4).replace(/[:\s]/g, '');
      if (!/^([0-9a-fA-F]{2})*$/.test(hex)) return refuse("'hex:' followed by pairs of hex digits");
      if (spec) checkRaw(Buffer.from(hex, 'hex'), spec);
      return { ok: true, value: `hex:${hex.toLowerCase()}` };
    }
    return { ok: true, value: checkTyped(value, spec) };
  } catch (err) {
    if (err instanceof Refused) return refuse();
    throw err;
  }
}

export type RefusedOption = { index: number; code: unknown; message: string };

/**
 * For a reader of documents stored before these checks (the DHCP server's inventory cache): the options that
 * pass, normalised, and why each other one is left out, so one bad value costs that option, not the subnet.
 */
export function keepValidOptions(options: unknown): {
  options: { code: number; value: OptionValue }[];
  refused: RefusedOption[];
} {
  const kept: { code: number; value: OptionValue }[] = [];
  const refused: RefusedOption[] = [];
  if (!Array.isArray(options)) return { options: kept, refused };
  options.forEach((o: unknown, index) => {
    const { code, value } = (o ?? {}) as { code?: unknown; value?: unknown };
    if (typeof code !== 'number' || !Number.isInteger(code) || code < 1 || code > 254) {
      refused.push({ index, code, message: `option code ${show(code)} is not an integer from 1 to 254` });
      return;
    }
    const r = checkOptionValue(code, value);
    if (r.ok) kept.push({ code, value: r.value });
    else refused.push({ index, code, message: r.message });
  });
  return { options: kept, refused };
}
