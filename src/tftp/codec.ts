/**
 * TFTP wire format (RFC 1350) with option extension (RFC 2347): blksize (RFC 2348), tsize and timeout (RFC 2349),
 * windowsize (RFC 7440). Pure functions: bytes in, typed values out. Decoding never throws; anything that is not a
 * well-formed packet comes back as `{ ok: false, error }` so the server can drop and count it.
 */

export const OP = { RRQ: 1, WRQ: 2, DATA: 3, ACK: 4, ERROR: 5, OACK: 6 } as const;

/** RFC 1350 section 5 error codes, plus 8 from RFC 2347. */
export const ERR = {
  NOT_DEFINED: 0,
  FILE_NOT_FOUND: 1,
  ACCESS_VIOLATION: 2,
  DISK_FULL: 3,
  ILLEGAL_OPERATION: 4,
  UNKNOWN_TID: 5,
  FILE_EXISTS: 6,
  NO_SUCH_USER: 7,
  OPTION_NEGOTIATION: 8,
} as const;

/** RFC 2348: valid block sizes. */
export const BLKSIZE_MIN = 8;
export const BLKSIZE_MAX = 65464;
export const DEFAULT_BLKSIZE = 512;

/** Options in the order the client sent them; names lower-cased (RFC 2347: case-insensitive), values raw. */
export type OptionList = Array<[name: string, value: string]>;

export type RequestPacket = { op: 'RRQ' | 'WRQ'; filename: string; mode: string; options: OptionList };
export type DataPacket = { op: 'DATA'; block: number; data: Buffer };
export type AckPacket = { op: 'ACK'; block: number };
export type ErrorPacket = { op: 'ERROR'; code: number; message: string };
export type OackPacket = { op: 'OACK'; options: OptionList };
export type TftpPacket = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

export type Decoded = { ok: true; packet: TftpPacket } | { ok: false; error: string };

// Filenames and option strings are netascii in the RFC; in practice UTF-8 paths. A fatal decoder refuses invalid
// byte sequences instead of mapping them to U+FFFD (two different byte strings must not name the same file).
const utf8 = new TextDecoder('utf-8', { fatal: true });

function fail(error: string): Decoded {
  return { ok: false, error };
}

/** Splits NUL-terminated strings starting at `from`. Returns undefined if the last one is not terminated. */
function cstrings(buf: Buffer, from: number): string[] | undefined {
  const out: string[] = [];
  let start = from;
  while (start < buf.length) {
    const end = buf.indexOf(0, start);
    if (end < 0) return undefined;
    try {
      out.push(utf8.decode(buf.subarray(start, end)));
    } catch {
      return undefined;
    }
    start = end + 1;
  }
  return out;
}

function decodeRequest(buf: Buffer, op: 'RRQ' | 'WRQ'): Decoded {
  const parts = cstrings(buf, 2);
  if (parts === undefined) return fail(`${op}: unterminated or non-UTF-8 string`);
  if (parts.length < 2) return fail(`${op}: missing filename or mode`);
  const [filename, mode] = parts;
  if (filename.length === 0) return fail(`${op}: empty filename`);
  if (mode.length === 0) return fail(`${op}: empty mode`);
  // Some PXE ROMs pad the request with NUL bytes after the last option: trailing empty strings are tolerated.
  // An option with an empty value ("x\0\0") stays a pair; only unpaired or empty-named trailing strings are padding.
  const rest = parts.slice(2);
  while (rest.length > 0 && rest[rest.length - 1] === '' && (rest.length % 2 === 1 || rest[rest.length - 2] === '')) {
    rest.pop();
  }
  if (rest.length % 2 !== 0) return fail(`${op}: option "${rest[rest.length - 1]}" has no value`);
  const options: OptionList = [];
  for (let i = 0; i < rest.length; i += 2) {
    if (rest[i].length === 0) return fail(`${op}: empty option name`);
    options.push([rest[i].toLowerCase(), rest[i + 1]]);
  }
  return { ok: true, packet: { op, filename, mode: mode.toLowerCase(), options } };
}

export function decodePacket(buf: Buffer): Decoded {
  if (buf.length < 2) return fail('shorter than an opcode');
  const opcode = buf.readUInt16BE(0);
  switch (opcode) {
    case OP.RRQ:
      return decodeRequest(buf, 'RRQ');
    case OP.WRQ:
      return decodeRequest(buf, 'WRQ');
    case OP.DATA:
      if (buf.length < 4) return fail('DATA: no block number');
      return { ok: true, packet: { op: 'DATA', block: buf.readUInt16BE(2), data: buf.subarray(4) } };
    case OP.ACK:
      if (buf.length !== 4) return fail(`ACK: ${buf.length} bytes, expected 4`);
      return { ok: true, packet: { op: 'ACK', block: buf.readUInt16BE(2) } };
    case OP.ERROR: {
      if (buf.length < 4) return fail('ERROR: no error code');
      // Lenient on the final NUL: some clients omit it, and the message is only logged.
      const end = buf.indexOf(0, 4);
      let message: string;
      try {
        message = utf8.decode(buf.subarray(4, end < 0 ? buf.length : end));
      } catch {
        message = buf.subarray(4, end < 0 ? buf.length : end).toString('latin1');
      }
      return { ok: true, packet: { op: 'ERROR', code: buf.readUInt16BE(2), message } };
    }
    case OP.OACK: {
      const parts = cstrings(buf, 2);
      if (parts === undefined || parts.length % 2 !== 0) return fail('OACK: malformed option list');
      const options: OptionList = [];
      for (let i = 0; i < parts.length; i += 2) options.push([parts[i].toLowerCase(), parts[i + 1]]);
      return { ok: true, packet: { op: 'OACK', options } };
    }
    default:
      return fail(`unknown opcode ${opcode}`);
  }
}

function strings(op: number, items: string[]): Buffer {
  const bufs = items.map((s) => Buffer.from(s, 'utf8'));
  const out = Buffer.allocUnsafe(2 + bufs.reduce((n, b) => n + b.length + 1, 0));
  out.writeUInt16BE(op, 0);
  let off = 2;
  for (const b of bufs) {
    b.copy(out, off);
    off += b.length;
    out[off++] = 0;
  }
  return out;
}

export function encodeRequest(op: 'RRQ' | 'WRQ', filename: string, mode: string, options: OptionList = []): Buffer {
  return strings(op === 'RRQ' ? OP.RRQ : OP.WRQ, [filename, mode, ...options.flat()]);
}

export function encodeOack(options: OptionList): Buffer {
  return strings(OP.OACK, options.flat());
}

export function encodeData(block: number, data: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + data.length);
  out.writeUInt16BE(OP.DATA, 0);
  out.writeUInt16BE(block & 0xffff, 2);
  data.copy(out, 4);
  return out;
}

export function encodeAck(block: number): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt16BE(OP.ACK, 0);
  out.writeUInt16BE(block & 0xffff, 2);
  return out;
}

export function encodeError(code: number, message: string): Buffer {
  const msg = Buffer.from(message, 'utf8');
  const out = Buffer.allocUnsafe(5 + msg.length);
  out.writeUInt16BE(OP.ERROR, 0);
  out.writeUInt16BE(code, 2);
  msg.copy(out, 4);
  out[4 + msg.length] = 0;
  return out;
}

export function encodePacket(p: TftpPacket): Buffer {
  switch (p.op) {
    case 'RRQ':
    case 'WRQ':
      return encodeRequest(p.op, p.filename, p.mode, p.options);
    case 'DATA':
      return encodeData(p.block, p.data);
    case 'ACK':
      return encodeAck(p.block);
    case 'ERROR':
      return encodeError(p.code, p.message);
    case 'OACK':
      return encodeOack(p.options);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Option negotiation (server side).

export type Limits = {
  /** Largest blksize this server grants to this client (firmware quirks: some UEFI clients need <= 1024). */
  maxBlksize: number;
  /** Largest windowsize granted (RFC 7440 lets the server answer with a smaller one). */
  maxWindowsize: number;
  /**
   * Largest RFC 2349 timeout (seconds) granted; a larger valid one is left out of the OACK (default 255: all).
   * RFC 2349 lets the server only echo the value or decline the option, never answer a smaller one.
   */
  maxTimeout?: number;
};

export type Negotiated = {
  blksize: number;
  windowsize: number;
  /** RFC 2349 timeout in seconds, if the client asked for a valid one and it was granted. */
  timeout?: number;
  /** A valid timeout above `maxTimeout` that was left out of the OACK (the server's own timeout applies). */
  timeoutDeclined?: number;
  /** RFC 2349 tsize the client sent (0 on RRQ; the upload size on WRQ), if any. */
  tsize?: number;
  /** What goes into the OACK, in the client's order; empty means no OACK (RFC 2347: plain RFC 1350 transfer). */
  oack: OptionList;
  /** Set when a value is outside its RFC range: the request is answered with ERROR 8 (the reason is for the log). */
  refused?: string;
};

/** The ERROR 8 text atftpd sends, which atftp's conformance script (and its users' scripts) look for. */
export const NEGOTIATION_FAILED = 'Failure to negotiate RFC2347 options';

/** Strict decimal: RFC 2347 values are ASCII digits; no signs, spaces, hex or exponents. */
function decimal(v: string): number | undefined {
  if (!/^[0-9]{1,10}$/.test(v)) return undefined;
  return Number(v);
}

/**
 * Decides which requested options are granted. A number outside its RFC range (blksize 8..65464, timeout 1..255,
 * windowsize 1..65535) refuses the request with ERROR 8, as atftpd does and atftp's conformance script expects; a
 * value that is not a number at all is only left out of the OACK (RFC 2347 lets the server decline an option, and
 * the client then falls back to RFC 1350 defaults). Below the range maximum, blksize and windowsize are lowered to
 * this server's limits (RFC 2348 and 7440 allow a smaller answer). `tsizeValue` is filled in by the caller (RRQ: the
 * file size).
 */
export function negotiate(options: OptionList, limits: Limits, tsizeValue?: number): Negotiated {
  const out: Negotiated = { blksize: DEFAULT_BLKSIZE, windowsize: 1, oack: [] };
  const seen = new Set<string>();
  for (const [name, raw] of options) {
    if (seen.has(name)) continue; // a repeated option: the first one counts
    seen.add(name);
    const v = decimal(raw);
    if (v === undefined) continue;
    switch (name) {
      case 'blksize': {
        if (v < BLKSIZE_MIN || v > BLKSIZE_MAX) return { ...out, refused: `blksize ${v} is outside 8..65464` };
        // RFC 2348: the server may answer with a smaller size than asked.
        const cap = Math.max(BLKSIZE_MIN, Math.min(limits.maxBlksize, BLKSIZE_MAX));
        out.blksize = Math.min(v, cap);
        out.oack.push(['blksize', String(out.blksize)]);
        break;
      }
      case 'windowsize': {
        if (v < 1 || v > 65535) return { ...out, refused: `windowsize ${v} is outside 1..65535` };
        out.windowsize = Math.min(v, Math.max(1, limits.maxWindowsize));
        out.oack.push(['windowsize', String(out.windowsize)]);
        break;
      }
      case 'timeout': {
        // RFC 2349: 1..255 seconds, and the server must echo exactly the value asked or leave the option out. Out
        // of range is refused (atftpd does, atftp's conformance script checks it); above our cap it is left out, so
        // no client holds a transfer (and its socket) for 255 s x retries.
        if (v < 1 || v > 255) return { ...out, refused: `timeout ${v} is outside 1..255` };
        if (v > (limits.maxTimeout ?? 255)) {
          out.timeoutDeclined = v;
          break;
        }
        out.timeout = v;
        out.oack.push(['timeout', String(v)]);
        break;
      }
      case 'tsize': {
        out.tsize = v;
        out.oack.push(['tsize', String(tsizeValue ?? v)]);
        break;
      }
      default:
      // RFC 2347: unknown options are ignored (left out of the OACK).
    }
  }
  return out;
}

/** RFC 1350 netascii for a Unix file: LF -> CR LF, a bare CR -> CR NUL (what tftp-hpa and BSD do). */
export function toNetascii(buf: Buffer): Buffer {
  let extra = 0;
  for (let i = 0; i < buf.length; i++) if (buf[i] === 0x0a || buf[i] === 0x0d) extra++;
  if (extra === 0) return buf;
  const out = Buffer.allocUnsafe(buf.length + extra);
  let o = 0;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (c === 0x0a) {
      out[o++] = 0x0d;
      out[o++] = 0x0a;
    } else if (c === 0x0d) {
      out[o++] = 0x0d;
      out[o++] = 0x00;
    } else out[o++] = c;
  }
  return out;
}
