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

/** Reads one options area into `into`, concatenating repeated codes. Returns an error message or undefined. */
function readOptions(buf: Buffer, start: number, end: number, into: Map<number, Buffer[]>): string | undefined {
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
    const parts = into.get(code);
    const v = buf.subarray(i + 2, i + 2 + len);
    if (parts) parts.push(v);
    else into.set(code, [v]);
    i += 2 + len;
  }
  // No End option: tolerated, many embedded clients omit it when the options fill the buffer.
  return undefined;
}

const cstr = (b: Buffer): string => {
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? b.length : z).toString('latin1');
};

export function decode(buf: Buffer): DecodeResult {
  if (buf.length < HEADER_LEN + 4) return fail('too-short', `${buf.length} bytes, a DHCP message has at least 240`);
  const op = buf[0]!;
  if (op !== 1 && op !== 2) return fail('bad-op', `op ${op} is neither BOOTREQUEST nor BOOTREPLY`);
  const hlen = buf[2]!;
  if (hlen > 16) return fail('bad-hlen', `hlen ${hlen} is larger than chaddr (16)`);
  if (buf.readUInt32BE(HEADER_LEN) !== MAGIC)
    return fail('bad-magic', 'no DHCP magic cookie (plain BOOTP is not served)');

  const parts = new Map<number, Buffer[]>();
  const err = readOptions(buf, HEADER_LEN + 4, buf.length, parts);
  if (err) return fail('option-overrun', err);
  // RFC 2131 4.1 / RFC 3396: overload puts more options into file (1), sname (2) or both (3), read in the
  // order options, file, sname. An option 52 inside those fields is ignored, so overload cannot loop.
  const ov = parts.get(Opt.Overload);
  let overload = 0;
  if (ov) {
    const v = Buffer.concat(ov);
    if (v.length !== 1 || v[0]! < 1 || v[0]! > 3)
      return fail('bad-overload', `option 52 value ${v.toString('hex')} is not 1, 2 or 3`);
    overload = v[0]!;
    const more = new Map<number, Buffer[]>();
    if (overload & 1) {
      const e = readOptions(buf, 108, 236, more);
      if (e) return fail('option-overrun', `in file field: ${e}`);
    }
    if (overload & 2) {
      const e = readOptions(buf, 44, 108, more);
      if (e) return fail('option-overrun', `in sname field: ${e}`);
    }
    for (const [code, vs] of more) {
      if (code === Opt.Overload) continue;
      const p = parts.get(code);
      if (p) p.push(...vs);
      else parts.set(code, vs);
    }
  }
  const options = new Map<number, Buffer>();
  for (const [code, vs] of parts) options.set(code, vs.length === 1 ? vs[0]! : Buffer.concat(vs));
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
      chaddr: Buffer.from(buf.subarray(28, 44)),
      sname: overload & 2 ? '' : cstr(buf.subarray(44, 108)),
      file: overload & 1 ? '' : cstr(buf.subarray(108, 236)),
      options,
    },
  };
}

/** Splits one option into code/len chunks of at most 255 bytes (RFC 3396). */
function optionBytes(code: number, v: Buffer): Buffer[] {
  if (v.length === 0) return [Buffer.from([code, 0])];
  const out: Buffer[] = [];
  for (let i = 0; i < v.length; i += 255) {
    const chunk = v.subarray(i, Math.min(i + 255, v.length));
    out.push(Buffer.from([code, chunk.length]), chunk);
  }
  return out;
}

/**
 * Encodes a message. `maxSize` is the client's limit (option 57, else 576, RFC 2131 2): when the options do not
 * fit, and file/sname are unused, they spill into those fields with option 52; otherwise the options that do
 * not fit are dropped last-first and reported in `dropped` so the caller can log it.
 */
export function encode(p: DhcpPacket, maxSize = 576): Buffer {
  return encodeWithReport(p, maxSize).buf;
}

export function encodeWithReport(p: DhcpPacket, maxSize = 576): { buf: Buffer; dropped: number[] } {
  const head = Buffer.alloc(HEADER_LEN + 4);
  head[0] = p.op;
  head[1] = p.htype;
  head[2] = p.hlen;
  head[3] = p.hops;
  head.writeUInt32BE(p.xid >>> 0, 4);
  head.writeUInt16BE(p.secs & 0xffff, 8);
  head.writeUInt16BE(p.flags & 0xffff, 10);
  ipBytes(p.ciaddr).copy(head, 12);
  ipBytes(p.yiaddr).copy(head, 16);
  ipBytes(p.siaddr).copy(head, 20);
  ipBytes(p.giaddr).copy(head, 24);
  p.chaddr.copy(head, 28, 0, Math.min(16, p.chaddr.length));
  head.write(p.sname.slice(0, 63), 44, 'latin1');
  head.write(p.file.slice(0, 127), 108, 'latin1');
  head.writeUInt32BE(MAGIC, HEADER_LEN);

  // Message type first: some PXE ROMs only look for 53 at the start of the options.
  const order = [...p.options.keys()].filter((c) => c !== Opt.Overload && c !== Opt.End && c !== Opt.Pad);
  order.sort((a, b) => (a === Opt.MessageType ? -1 : b === Opt.MessageType ? 1 : 0));
  const encoded = order.map((c) => ({ code: c, bytes: Buffer.concat(optionBytes(c, p.options.get(c)!)) }));
  const limit = Math.max(576, Math.min(maxSize, 65535)) - 28; // IP + UDP headers
  const room = limit - head.length - 1; // End
  const total = encoded.reduce((n, e) => n + e.bytes.length, 0);
  const dropped: number[] = [];
  let main: Buffer[] = encoded.map((e) => e.bytes);
  let fileArea: Buffer | undefined;
  let snameArea: Buffer | undefined;
  let overload = 0;
  if (total > room) {
    // Try the overload fields (only when unused): file gives 127+1, sname 63+1 (each needs its own End).
    const canFile = p.file === '';
    const canSname = p.sname === '';
    const inMain: Buffer[] = [];
    const inFile: Buffer[] = [];
    const inSname: Buffer[] = [];
    let mainLeft = room - 3; // option 52 itself
    let fileLeft = canFile ? 127 : 0;
    let snameLeft = canSname ? 63 : 0;
    for (const e of encoded) {
      const n = e.bytes.length;
      if (n <= mainLeft) {
        inMain.push(e.bytes);
        mainLeft -= n;
      } else if (n <= fileLeft) {
        inFile.push(e.bytes);
        fileLeft -= n;
      } else if (n <= snameLeft) {
        inSname.push(e.bytes);
        snameLeft -= n;
      } else dropped.push(e.code);
    }
    main = inMain;
    if (inFile.length) {
      overload |= 1;
      fileArea = Buffer.concat([...inFile, Buffer.from([Opt.End])]);
    }
    if (inSname.length) {
      overload |= 2;
      snameArea = Buffer.concat([...inSname, Buffer.from([Opt.End])]);
    }
  }
  if (overload) {
    main.unshift(...[Buffer.from([Opt.Overload, 1, overload])]);
    // Keep 53 first: move it before 52.
    const mtIdx = main.findIndex((b) => b[0] === Opt.MessageType);
    if (mtIdx > 0) main.unshift(main.splice(mtIdx, 1)[0]!);
    head.fill(0, 44, 236);
    if (fileArea) fileArea.copy(head, 108);
    if (snameArea) snameArea.copy(head, 44);
  }
  let buf = Buffer.concat([head, ...main, Buffer.from([Opt.End])]);
  if (buf.length < MIN_REPLY_LEN) buf = Buffer.concat([buf, Buffer.alloc(MIN_REPLY_LEN - buf.length)]);
  return { buf, dropped };
}

/** The client's MAC as Plinth writes it (lower-case, colons), from chaddr/hlen. */
export const macOf = (p: DhcpPacket): string =>
  [...p.chaddr.subarray(0, Math.min(p.hlen || 6, 16))].map((b) => b.toString(16).padStart(2, '0')).join(':');

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
