/**
 * BOOTP/DHCP message codec (RFC 2131 section 2, RFC 2132, RFC 3396 long options, option overload 52).
 * decode() never throws: a malformed message comes back as a typed error the server counts and drops.
 */
import { bytesIp, ipBytes, Opt } from './options.js';

export const MAGIC = 0x63825363;
export const HEADER_LEN = 236; // fixed BOOTP header; the magic cookie follows
export const MIN_REPLY_LEN = 300; // BOOTP relays and old clients drop shorter messages (RFC 1542 2.1)

export type DhcpPacket = {
  op: number; // 1 BOOTREQUEST, 2 BOOTREPLY
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number; // bit 15 = broadcast
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  chaddr: Buffer; // 16 bytes as on the wire; the MAC is the first hlen of them
  sname: string;
  file: string;
  /** Options in wire order; several occurrences of one code are joined into one value (RFC 3396). */
  options: Map<number, Buffer>;
};

export type DecodeErrorCode =
  | 'too-short'
  | 'bad-op'
  | 'bad-hlen'
  | 'bad-magic'
  | 'option-overrun'
  | 'bad-overload'
  | 'no-message-type';
export type DecodeResult = { ok: true; packet: DhcpPacket } | { ok: false; code: DecodeErrorCode; message: string };

const fail = (code: DecodeErrorCode, message: string): DecodeResult => ({ ok: false, code, message });

/** Reads one options area into `into`, joining repeated codes (RFC 3396). Returns an error message or undefined. */
function readOptions(buf: Buffer, start: number, end: number, into: Map<number, Buffer>): string | undefined {
  let i = start;
  while (i < end) {
    const code = buf[i]!;
    if (code === Opt.Pad) {
      i++;
      continue;
    }
    if (code === Opt.End) return undefined;
    if (i + 1 >= end) return `option ${code} at offset ${i} has no length byte`;
    const len = buf[i + 1]!;
    if (i + 2 + len > end) return `option ${code} at offset ${i} claims ${len} bytes past the end of its field`;
    const v = buf.subarray(i + 2, i + 2 + len);
    const prev = into.get(code);
    into.set(code, prev ? Buffer.concat([prev, v]) : v);
    i += 2 + len;
  }
  // No End option: tolerated, many embedded clients omit it when the options fill the buffer.
  return undefined;
}

/** The NUL-terminated string in buf[start, end) (sname, file); empty at once for the usual zero field. */
const cstr = (buf: Buffer, start: number, end: number): string => {
  if (buf[start] === 0) return '';
  const z = buf.indexOf(0, start);
  return buf.toString('latin1', start, z < 0 || z > end ? end : z);
};

export function decode(buf: Buffer): DecodeResult {
  if (buf.length < HEADER_LEN + 4) return fail('too-short', `${buf.length} bytes, a DHCP message has at least 240`);
  const op = buf[0]!;
  if (op !== 1 && op !== 2) return fail('bad-op', `op ${op} is neither BOOTREQUEST nor BOOTREPLY`);
  const hlen = buf[2]!;
  if (hlen > 16) return fail('bad-hlen', `hlen ${hlen} is larger than chaddr (16)`);
  if (buf.readUInt32BE(HEADER_LEN) !== MAGIC)
    return fail('bad-magic', 'no DHCP magic cookie (plain BOOTP is not served)');

  // The values are copied out of the datagram once, so decoded options never pin (or alias) the receive buffer.
  const copy = Buffer.from(buf);
  const options = new Map<number, Buffer>();
  const err = readOptions(copy, HEADER_LEN + 4, copy.length, options);
  if (err) return fail('option-overrun', err);
  // RFC 2131 4.1 / RFC 3396: overload puts more options into file (1), sname (2) or both (3), read in the
  // order options, file, sname. An option 52 inside those fields is ignored, so overload cannot loop.
  const ov = options.get(Opt.Overload);
  let overload = 0;
  if (ov) {
    if (ov.length !== 1 || ov[0]! < 1 || ov[0]! > 3)
      return fail('bad-overload', `option 52 value ${ov.toString('hex')} is not 1, 2 or 3`);
    overload = ov[0]!;
    const more = new Map<number, Buffer>();
    if (overload & 1) {
      const e = readOptions(copy, 108, 236, more);
      if (e) return fail('option-overrun', `in file field: ${e}`);
    }
    if (overload & 2) {
      const e = readOptions(copy, 44, 108, more);
      if (e) return fail('option-overrun', `in sname field: ${e}`);
    }
    for (const [code, v] of more) {
      if (code === Opt.Overload) continue;
      const p = options.get(code);
      options.set(code, p ? Buffer.concat([p, v]) : v);
    }
  }
  const mt = options.get(Opt.MessageType);
  if (mt?.length !== 1) return fail('no-message-type', 'no valid option 53 (plain BOOTP is not served)');

  return {
    ok: true,
    packet: {
      op,
      htype: buf[1]!,
      hlen,
      hops: buf[3]!,
      xid: buf.readUInt32BE(4),
      secs: buf.readUInt16BE(8),
      flags: buf.readUInt16BE(10),
      ciaddr: bytesIp(buf, 12),
      yiaddr: bytesIp(buf, 16),
      siaddr: bytesIp(buf, 20),
      giaddr: bytesIp(buf, 24),
      chaddr: copy.subarray(28, 44),
      sname: overload & 2 ? '' : cstr(buf, 44, 108),
      file: overload & 1 ? '' : cstr(buf, 108, 236),
      options,
    },
  };
}

/**
 * Encodes a message. `maxSize` is the client's limit (option 57, else 576, RFC 2131 2): when the options do not
 * fit, and file/sname are unused, they spill into those fields with option 52; otherwise the options that do
 * not fit are dropped last-first and reported in `dropped` so the caller can log it.
 */
export function encode(p: DhcpPacket, maxSize = 576): Buffer {
  return encodeWithReport(p, maxSize).buf;
}

export function encodeWithReport(p: DhcpPacket, maxSize = 576, prl?: Buffer): { buf: Buffer; dropped: number[] } {
  const order = optionOrder(p.options, prl);
  const limit = Math.max(576, Math.min(maxSize, 65535)) - 28; // IP + UDP headers
  const room = limit - (HEADER_LEN + 4) - 1; // End
  // Fast path (every reply Plinth builds in practice): the options fit, one buffer written in place (no header
  // buffer copied into it: one allocation per reply, on the packet path).
  let wire = 0;
  for (const c of order) wire += wireLength(p.options.get(c)!.length);
  if (wire <= room) {
    const out = Buffer.alloc(Math.max(MIN_REPLY_LEN, HEADER_LEN + 4 + wire + 1));
    let o = writeHeader(out, p);
    for (const c of order) o = writeOption(out, o, c, p.options.get(c)!);
    out[o] = Opt.End;
    return { buf: out, dropped: [] };
  }
  const head = Buffer.alloc(HEADER_LEN + 4);
  writeHeader(head, p);
  return overloaded(p, head, order, room);
}

/** Not placed in the map's order: 53 goes first on its own, 52 is the encoder's own (overload), End and Pad are
 * not options. */
const unlisted = (c: number) => c === Opt.MessageType || c === Opt.Overload || c === Opt.End || c === Opt.Pad;

/**
 * The order options go on the wire. Message type first: some PXE ROMs only look for 53 at the start. With the
 * client's parameter request list (option 55), RFC 2132 9.8: the server MUST try to insert the requested options
 * in the order the client listed them: 54 next (those ROMs again), then the requested ones in its order, then the
 * rest in the reply's order, so when a reply is too large the unrequested ones are dropped first. One array, built
 * in one pass: a comparator sort allocated about 1 KB per reply, and a reordered copy of the map about as much.
 */
function optionOrder(o: Map<number, Buffer>, prl?: Buffer): number[] {
  const order: number[] = o.has(Opt.MessageType) ? [Opt.MessageType] : [];
  const first = order.length;
  if (prl?.length) {
    if (o.has(Opt.ServerId)) order.push(Opt.ServerId);
    for (let i = 0; i < prl.length; i++) {
      const c = prl[i]!;
      if (!unlisted(c) && o.has(c) && !order.includes(c)) order.push(c);
    }
  }
  const dedupe = order.length > first;
  for (const c of o.keys()) if (!unlisted(c) && (!dedupe || !order.includes(c))) order.push(c);
  return order;
}

/** The fixed BOOTP header and the magic cookie into a zeroed `out`; returns where the options start. */
function writeHeader(out: Buffer, p: DhcpPacket): number {
  out[0] = p.op;
  out[1] = p.htype;
  out[2] = p.hlen;
  out[3] = p.hops;
  out.writeUInt32BE(p.xid >>> 0, 4);
  out.writeUInt16BE(p.secs & 0xffff, 8);
  out.writeUInt16BE(p.flags & 0xffff, 10);
  writeIp(out, 12, p.ciaddr);
  writeIp(out, 16, p.yiaddr);
  writeIp(out, 20, p.siaddr);
  writeIp(out, 24, p.giaddr);
  p.chaddr.copy(out, 28, 0, Math.min(16, p.chaddr.length));
  out.write(p.sname.slice(0, 63), 44, 'latin1');
  out.write(p.file.slice(0, 127), 108, 'latin1');
  out.writeUInt32BE(MAGIC, HEADER_LEN);
  return HEADER_LEN + 4;
}

/** Wire bytes of an option value of `n` bytes: code/len per chunk of at most 255 (RFC 3396). */
const wireLength = (n: number): number => n + 2 * Math.max(1, Math.ceil(n / 255));

/** Writes one option, split into chunks of at most 255 bytes (RFC 3396); returns the next offset. */
function writeOption(out: Buffer, o: number, code: number, v: Buffer): number {
  let i = 0;
  do {
    const n = Math.min(255, v.length - i);
    out[o] = code;
    out[o + 1] = n;
    v.copy(out, o + 2, i, i + n);
    o += 2 + n;
    i += n;
  } while (i < v.length);
  return o;
}

/** One options area: the options field, or file (128 bytes) or sname (64) under option 52. */
type Area = { parts: Buffer[]; left: number };

/**
 * RFC 2132 9.3 / RFC 2131 4.1: options that do not fit in the options field go on in `file`, then `sname`
 * (only those not carrying a boot file or server name), with option 52 saying which; each field ends with its
 * own End. Options are placed in priority order (53 and 54, the client's option 55 order, the rest), each
 * whole into the first area with room, so small ones stay in the options field that every client reads. One
 * that fits no area whole is split over the areas' remaining space in the order options, file, sname: the
 * receiver joins the parts in that order (RFC 3396 7). What fits nowhere is dropped and reported.
 */
function overloaded(p: DhcpPacket, head: Buffer, order: number[], room: number): { buf: Buffer; dropped: number[] } {
  const file = p.file === '' ? 127 : 0;
  const sname = p.sname === '' ? 63 : 0;
  const areas: Area[] = [
    { parts: [], left: room - (file || sname ? 3 : 0) }, // option 52 itself, when there is somewhere to spill
    { parts: [], left: file },
    { parts: [], left: sname },
  ];
  const dropped: number[] = [];
  for (const code of order) if (!place(areas, code, p.options.get(code)!)) dropped.push(code);
  const [main, inFile, inSname] = areas as [Area, Area, Area];
  const overload = (inFile.parts.length ? 1 : 0) | (inSname.parts.length ? 2 : 0);
  if (overload) {
    // 53 stays first (it always fits, being placed first), 52 right after it.
    main.parts.splice(main.parts[0]?.[0] === Opt.MessageType ? 1 : 0, 0, Buffer.from([Opt.Overload, 1, overload]));
    // Only the fields carrying options are cleared: a boot file name in the other one stays.
    if (inFile.parts.length) Buffer.concat([...inFile.parts, END]).copy(head.fill(0, 108, 236), 108);
    if (inSname.parts.length) Buffer.concat([...inSname.parts, END]).copy(head.fill(0, 44, 108), 44);
  }
  let buf = Buffer.concat([head, ...main.parts, END]);
  if (buf.length < MIN_REPLY_LEN) buf = Buffer.concat([buf, Buffer.alloc(MIN_REPLY_LEN - buf.length)]);
  return { buf, dropped };
}
const END = Buffer.from([Opt.End]);

/** Places one option into the areas (whole if it can, else split over them in order); false if it fits nowhere. */
function place(areas: Area[], code: number, v: Buffer): boolean {
  const whole = wireLength(v.length);
  for (const a of areas) {
    if (whole <= a.left) {
      const b = Buffer.alloc(whole);
      writeOption(b, 0, code, v);
      a.parts.push(b);
      a.left -= whole;
      return true;
    }
  }
  // Split: each piece is code, length and at least one byte of data, at most 255.
  let capacity = 0;
  for (const a of areas)
    for (let left = a.left; left >= 3; left -= Math.min(257, left)) capacity += Math.min(255, left - 2);
  if (v.length === 0 || capacity < v.length) return false;
  let i = 0;
  for (const a of areas) {
    while (i < v.length && a.left >= 3) {
      const n = Math.min(255, a.left - 2, v.length - i);
      a.parts.push(Buffer.concat([Buffer.from([code, n]), v.subarray(i, i + n)]));
      a.left -= n + 2;
      i += n;
    }
  }
  return true;
}

/** Dotted quad into 4 bytes without a regex or an array (hot path); falls back to the checked parser. */
function writeIp(b: Buffer, off: number, ip: string): void {
  if (ip === '0.0.0.0') return;
  let part = 0;
  let n = 0;
  let digits = 0;
  for (let i = 0; i <= ip.length; i++) {
    const c = i < ip.length ? ip.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || n > 255 || part > 3) return void ipBytes(ip).copy(b, off);
      b[off + part++] = n;
      n = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      n = n * 10 + (c - 48);
      digits++;
    } else return void ipBytes(ip).copy(b, off);
  }
  if (part !== 4) ipBytes(ip).copy(b, off);
}

/** The client's MAC as Plinth writes it (lower-case, colons), from chaddr/hlen. */
export function macOf(p: DhcpPacket): string {
  // RFC 4390 (IPoIB): hlen 0 and chaddr zeroed; the client identifier names the client, the MAC is a placeholder.
  if (p.hlen === 0) return ZERO_MAC;
  const n = Math.min(p.hlen, 16, p.chaddr.length);
  let out = n > 0 ? HEX[p.chaddr[0]!]! : '';
  for (let i = 1; i < n; i++) out += `:${HEX[p.chaddr[i]!]!}`;
  return out;
}
export const ZERO_MAC = '00:00:00:00:00:00';
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export const isBroadcast = (p: DhcpPacket): boolean => (p.flags & 0x8000) !== 0;

export function emptyPacket(op: 1 | 2): DhcpPacket {
  return {
    op,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0,
    secs: 0,
    flags: 0,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: Buffer.alloc(16),
    sname: '',
    file: '',
    options: new Map(),
  };
}

export function macBytes(mac: string): Buffer {
  const b = Buffer.alloc(16);
  Buffer.from(mac.replace(/[:-]/g, ''), 'hex').copy(b);
  return b;
}
