/**
 * Malformed DHCP and TFTP packets for the security e2e suite: valid packets from a seeded PRNG, then mutated the
 * way a hostile or broken peer would (truncation, bit flips, option lengths that lie, random opcodes, absurd option
 * values, trailing garbage). Pure functions: the same seed gives the same packets, so a crash found once can be
 * replayed with `--seed`.
 */

export type Rng = {
  /** Uniform in [0, 1). */
  next(): number;
  int(n: number): number;
  pick<T>(a: readonly T[]): T;
  bytes(n: number): Buffer;
};

/** mulberry32: tiny, fast and good enough to spread mutations; not for cryptography. */
export function rng(seed: number): Rng {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    pick: (a) => a[int(a.length)]!,
    bytes: (n) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
  };
}

/** A locally administered unicast MAC (02:...), as bytes. */
export function randomMac(r: Rng): Buffer {
  const m = r.bytes(6);
  m[0] = 0x02;
  return m;
}

export const macString = (m: Buffer) => [...m].map((b) => b.toString(16).padStart(2, '0')).join(':');

const MAGIC = Buffer.from([99, 130, 83, 99]);
const opt = (code: number, value: Buffer) => Buffer.concat([Buffer.from([code, value.length]), value]);

/** A well-formed BOOTREQUEST: DHCPDISCOVER (or `type`) with the options a PXE ROM sends. */
export function dhcpRequest(r: Rng, mac: Buffer, type = 1, xid = r.int(2 ** 32)): Buffer {
  const head = Buffer.alloc(236);
  head[0] = 1; // BOOTREQUEST
  head[1] = 1; // Ethernet
  head[2] = 6;
  head.writeUInt32BE(xid >>> 0, 4);
  head.writeUInt16BE(0x8000, 10); // broadcast flag: replies never depend on our ARP
  mac.copy(head, 28);
  const options = [
    opt(53, Buffer.from([type])),
    opt(61, Buffer.concat([Buffer.from([1]), mac])),
    opt(55, Buffer.from([1, 3, 6, 12, 15, 28, 42, 43, 60, 66, 67, 97, 119, 128, 175])),
    opt(57, Buffer.from([0x05, 0xc0])),
    opt(93, Buffer.from([0, r.pick([0, 6, 7, 9, 11])])),
    opt(94, Buffer.from([1, 2, 1])),
    opt(60, Buffer.from('PXEClient:Arch:00000:UNDI:002001')),
    opt(97, Buffer.concat([Buffer.from([0]), r.bytes(16)])),
  ];
  if (r.next() < 0.3) options.push(opt(77, Buffer.from('iPXE')));
  if (type === 3)
    options.push(opt(50, Buffer.from([10, 97, 0, 10 + r.int(240)])), opt(54, Buffer.from([10, 97, 0, 1])));
  if (r.next() < 0.3) options.push(opt(12, Buffer.from(`host-${r.int(1000)}`)));
  return Buffer.concat([head, MAGIC, ...options, Buffer.from([255])]);
}

/** Option values that are legal bytes but absurd as meaning. */
function absurdOption(r: Rng): Buffer {
  switch (r.int(10)) {
    case 0:
      return opt(53, Buffer.from([r.pick([0, 9, 18, 255])])); // message type out of range
    case 1:
      return opt(
        57,
        Buffer.from(
          r.pick([
            [0, 0],
            [0xff, 0xff],
            [0, 1],
          ]),
        ),
      ); // max message size 0 / 65535
    case 2:
      return Buffer.from([61, 0]); // empty client identifier
    case 3:
      return opt(55, Buffer.from(Array.from({ length: 255 }, (_, i) => i))); // asks for every option
    case 4:
      return opt(12, Buffer.from('a\0b\0../../etc\n\r{{ secret }}')); // hostname with NULs, template syntax
    case 5:
      return opt(82, Buffer.from([1, 200, 2, 0, 9, 255])); // relay agent sub-options that overrun
    case 6:
      return opt(52, Buffer.from([r.pick([1, 2, 3, 7])])); // overload: sname/file hold options (garbage there)
    case 7:
      return opt(93, Buffer.from([0xff, 0xff, 0, 7, 0])); // arch list of odd length
    case 8:
      return opt(97, Buffer.from([1, 2])); // short uuid
    default:
      return opt(r.int(256), r.bytes(r.int(255)));
  }
}

/** Appends options after the END marker's position and/or rewrites one option's length byte. */
function optionLengthLie(r: Rng, p: Buffer): Buffer {
  const b = Buffer.from(p);
  let i = 240;
  const positions: number[] = [];
  while (i < b.length - 1 && b[i] !== 255) {
    if (b[i] === 0) {
      i++;
      continue;
    }
    positions.push(i + 1);
    i += 2 + b[i + 1]!;
  }
  if (positions.length === 0) return b;
  b[r.pick(positions)] = r.pick([0, 1, 255, 254, 128, r.int(256)]);
  return b;
}

function flipBits(r: Rng, p: Buffer, n: number): Buffer {
  const b = Buffer.from(p);
  if (b.length === 0) return b;
  for (let k = 0; k < n; k++) {
    const at = r.int(b.length);
    b[at] = b[at]! ^ (1 << r.int(8));
  }
  return b;
}

/**
 * One malformed DHCP packet. `macs` keeps the client hardware addresses to a small set so the fuzz is about
 * parsing, not pool exhaustion (the DISCOVER flood measures that); bit flips may still land in chaddr.
 */
export function fuzzDhcp(r: Rng, macs: readonly Buffer[]): Buffer {
  const base = dhcpRequest(r, r.pick(macs), r.pick([1, 3, 3, 4, 7, 8, r.int(256)]));
  let p: Buffer = base;
  const rounds = 1 + r.int(3);
  for (let k = 0; k < rounds; k++) {
    switch (r.int(9)) {
      case 0:
        p = p.subarray(0, r.int(p.length)); // truncated anywhere, including inside the fixed header
        break;
      case 1:
        p = flipBits(r, p, 1 + r.int(16));
        break;
      case 2:
        p = optionLengthLie(r, p);
        break;
      case 3: {
        const b = Buffer.from(p);
        b[0] = r.int(256); // op
        b[1] = r.int(256); // htype
        b[2] = r.pick([0, 16, 17, 255, r.int(256)]); // hlen past chaddr's 16 bytes
        b[3] = r.int(256); // hops
        p = b;
        break;
      }
      case 4: {
        // Absurd options before END (END moved to the end).
        const body = p.length > 241 ? p.subarray(0, p.length - 1) : p;
        p = Buffer.concat([body, absurdOption(r), absurdOption(r), Buffer.from([255])]);
        break;
      }
      case 5:
        p = p.length > 241 ? p.subarray(0, p.length - 1) : p; // no END option
        break;
      case 6:
        p = Buffer.concat([p, r.bytes(r.int(1200))]); // trailing garbage, up to a jumbo-ish datagram
        break;
      case 7: {
        const b = Buffer.from(p);
        if (b.length >= 240) b.writeUInt32BE(r.int(2 ** 32), 236); // wrong magic cookie
        p = b;
        break;
      }
      default:
        p = r.bytes(r.int(600)); // noise
    }
  }
  return p;
}

const z = (s: string) => Buffer.from(`${s}\0`);
const u16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
};

/** An RRQ (or WRQ) with RFC 2347 options; `options` as name/value pairs. */
export function tftpRequest(file: string, options: [string, string][] = [], op = 1, mode = 'octet'): Buffer {
  return Buffer.concat([u16(op), z(file), z(mode), ...options.flatMap(([k, v]) => [z(k), z(v)])]);
}

const FILES = ['x', 'missing', '../../etc/passwd', '/etc/shadow', 'machines/00000000-0000-0000-0000-000000000000/a'];
const ABSURD = ['0', '-1', '', 'abc', '7', '8', '65464', '65465', '255', '256', '99999999999999999999', '1e3', ' 512'];

/** One malformed TFTP packet to port 69: requests with absurd options, stray DATA/ACK/ERROR/OACK, then mutations. */
export function fuzzTftp(r: Rng): Buffer {
  let p: Buffer;
  switch (r.int(6)) {
    case 0:
    case 1: {
      // A file that exists only rarely: the fuzz is about parsing, the RRQ flood measures open transfers.
      const file = r.next() < 0.02 ? 'x' : r.pick(FILES.slice(1));
      const names = ['blksize', 'tsize', 'timeout', 'windowsize', 'BLKSIZE', 'multicast', r.bytes(4).toString('hex')];
      const options: [string, string][] = [];
      for (let k = r.int(6); k > 0; k--) options.push([r.pick(names), r.pick(ABSURD)]);
      const longName = r.next() < 0.05 ? 'a/'.repeat(300 + r.int(400)) : file;
      p = tftpRequest(longName, options, r.pick([1, 1, 2]), r.pick(['octet', 'netascii', 'mail', 'OCTET', '', 'x']));
      break;
    }
    case 2:
      p = Buffer.concat([u16(3), u16(r.int(65536)), r.bytes(r.int(1500))]); // DATA to the listener
      break;
    case 3:
      p = Buffer.concat([u16(4), u16(r.int(65536))]); // ACK to the listener
      break;
    case 4:
      p = Buffer.concat([u16(r.pick([5, 6])), u16(r.int(65536)), r.bytes(r.int(64))]); // ERROR, OACK
      break;
    default:
      p = Buffer.concat([u16(r.int(65536)), r.bytes(r.int(512))]); // random opcode
  }
  const rounds = r.int(3);
  for (let k = 0; k < rounds; k++) {
    switch (r.int(4)) {
      case 0:
        p = p.subarray(0, r.int(p.length + 1)); // truncated: no final NUL, lone opcode byte, empty
        break;
      case 1:
        p = flipBits(r, p, 1 + r.int(8));
        break;
      case 2:
        p = Buffer.from(p.toString('latin1').replaceAll('\0', r.pick(['', '\0\0', '\xff'])), 'latin1');
        break;
      default:
        p = Buffer.concat([p, r.bytes(r.int(200))]);
    }
  }
  return p;
}
