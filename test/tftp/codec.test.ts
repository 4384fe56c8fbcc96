import { describe, expect, it } from 'vitest';
import {
  decodePacket,
  encodeAck,
  encodeData,
  encodeError,
  encodeOack,
  encodePacket,
  encodeRequest,
  NEGOTIATION_FAILED,
  negotiate,
  type TftpPacket,
  toNetascii,
} from '../../src/tftp/codec.js';

const limits = { maxBlksize: 1468, maxWindowsize: 64 };

function bytes(...parts: Array<number[] | string>): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));
}

describe('codec round trips', () => {
  const packets: TftpPacket[] = [
    {
      op: 'RRQ',
      filename: 'ipxe.efi',
      mode: 'octet',
      options: [
        ['tsize', '0'],
        ['blksize', '1468'],
        ['windowsize', '4'],
      ],
    },
    { op: 'WRQ', filename: 'up/load.bin', mode: 'octet', options: [] },
    { op: 'RRQ', filename: 'pxelinux.cfg/01-52-54-00-00-00-01', mode: 'netascii', options: [] },
    { op: 'DATA', block: 65535, data: Buffer.from('hello') },
    { op: 'DATA', block: 0, data: Buffer.alloc(0) },
    { op: 'ACK', block: 0 },
    { op: 'ACK', block: 65535 },
    { op: 'ERROR', code: 8, message: 'User aborted the transfer' },
    {
      op: 'OACK',
      options: [
        ['blksize', '1468'],
        ['tsize', '850528'],
      ],
    },
  ];
  for (const p of packets) {
    it(`${p.op} ${JSON.stringify(p).slice(0, 60)}`, () => {
      const d = decodePacket(encodePacket(p));
      expect(d).toEqual({ ok: true, packet: p });
    });
  }

  it('decodes the exact bytes OVMF sends (lab capture)', () => {
    const wire = bytes([0, 1], 'ipxe.efi\0octet\0tsize\x000\0blksize\x001468\0windowsize\x004\0');
    const d = decodePacket(wire);
    expect(d).toEqual({
      ok: true,
      packet: {
        op: 'RRQ',
        filename: 'ipxe.efi',
        mode: 'octet',
        options: [
          ['tsize', '0'],
          ['blksize', '1468'],
          ['windowsize', '4'],
        ],
      },
    });
    expect(
      encodeRequest('RRQ', 'ipxe.efi', 'octet', [
        ['tsize', '0'],
        ['blksize', '1468'],
        ['windowsize', '4'],
      ]),
    ).toEqual(wire);
  });

  it('encodes DATA, ACK, ERROR, OACK byte for byte', () => {
    expect(encodeData(0x10001, Buffer.from('ab'))).toEqual(bytes([0, 3, 0, 1], 'ab'));
    expect(encodeAck(65536)).toEqual(bytes([0, 4, 0, 0]));
    expect(encodeError(1, 'File not found')).toEqual(bytes([0, 5, 0, 1], 'File not found\0'));
    expect(encodeOack([['blksize', '8']])).toEqual(bytes([0, 6], 'blksize\x008\0'));
  });
});

describe('decoder refuses malformed packets without throwing', () => {
  const cases: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['one byte', Buffer.from([0])],
    ['opcode 0', bytes([0, 0], 'x\0octet\0')],
    ['opcode 7', bytes([0, 7], 'x\0octet\0')],
    ['RRQ without mode', bytes([0, 1], 'file\0')],
    ['RRQ unterminated mode', bytes([0, 1], 'file\0octet')],
    ['RRQ empty filename', bytes([0, 1], '\0octet\0')],
    ['RRQ empty mode', bytes([0, 1], 'file\0\0')],
    ['RRQ option without value', bytes([0, 1], 'file\0octet\0blksize\0')],
    ['RRQ unterminated option value', bytes([0, 1], 'file\0octet\0blksize\x001468')],
    ['RRQ invalid UTF-8 filename', bytes([0, 1, 0xff, 0xfe, 0], 'octet\0')],
    ['DATA without block', bytes([0, 3, 0])],
    ['ACK too short', bytes([0, 4, 0])],
    ['ACK too long', bytes([0, 4, 0, 1, 0])],
    ['ERROR without code', bytes([0, 5, 0])],
    ['OACK odd strings', bytes([0, 6], 'blksize\0')],
  ];
  for (const [name, buf] of cases) {
    it(name, () => {
      const d = decodePacket(buf);
      expect(d.ok).toBe(false);
      if (!d.ok) expect(d.error.length).toBeGreaterThan(0);
    });
  }

  it('tolerates NUL padding after the last option and lower-cases option names and mode', () => {
    const d = decodePacket(bytes([0, 1], 'f\0OCTET\0BlkSize\x00512\0\0\0\0'));
    expect(d).toEqual({ ok: true, packet: { op: 'RRQ', filename: 'f', mode: 'octet', options: [['blksize', '512']] } });
  });

  it('keeps an option with an empty value apart from padding (found by the fuzz test)', () => {
    expect(decodePacket(bytes([0, 1], 'f\0octet\0x\0\0'))).toEqual({
      ok: true,
      packet: { op: 'RRQ', filename: 'f', mode: 'octet', options: [['x', '']] },
    });
  });

  it('accepts an ERROR without its final NUL', () => {
    expect(decodePacket(bytes([0, 5, 0, 8], 'abort'))).toEqual({
      ok: true,
      packet: { op: 'ERROR', code: 8, message: 'abort' },
    });
  });
});

describe('option negotiation', () => {
  it('no options: no OACK, RFC 1350 defaults', () => {
    expect(negotiate([], limits, 10)).toEqual({ blksize: 512, windowsize: 1, oack: [] });
  });

  it('grants what OVMF asks, echoing the real size for tsize', () => {
    const n = negotiate(
      [
        ['tsize', '0'],
        ['blksize', '1468'],
        ['windowsize', '4'],
      ],
      limits,
      850528,
    );
    expect(n.oack).toEqual([
      ['tsize', '850528'],
      ['blksize', '1468'],
      ['windowsize', '4'],
    ]);
    expect(n).toMatchObject({ blksize: 1468, windowsize: 4, tsize: 0 });
  });

  it('lowers blksize to the per-client maximum', () => {
    expect(negotiate([['blksize', '65464']], { maxBlksize: 1024, maxWindowsize: 1 }).blksize).toBe(1024);
    expect(negotiate([['blksize', '65464']], { maxBlksize: 100000, maxWindowsize: 1 }).blksize).toBe(65464);
    expect(negotiate([['blksize', '8']], limits).blksize).toBe(8);
  });

  it('refuses numbers outside the RFC ranges (ERROR 8, as atftpd)', () => {
    const outside: Array<[string, string]> = [
      ['blksize', '7'],
      ['blksize', '65465'],
      ['blksize', '99999'],
      ['windowsize', '0'],
      ['windowsize', '65536'],
      ['timeout', '0'],
      ['timeout', '256'],
    ];
    for (const o of outside) {
      const n = negotiate([['tsize', '0'], o], limits, 5);
      expect(n.refused, o.join(' ')).toMatch(new RegExp(`^${o[0]} ${o[1]} is outside`));
    }
    expect(NEGOTIATION_FAILED).toBe('Failure to negotiate RFC2347 options');
  });

  it('leaves values that are not numbers, and unknown options, out of the OACK', () => {
    const bad: Array<[string, string]> = [
      ['blksize', '-1'],
      ['blksize', '0x200'],
      ['blksize', ''],
      ['blksize', '1e3'],
      ['timeout', ' 5'],
      ['tsize', 'abc'],
      ['multicast', ''],
      ['rollover', '0'],
    ];
    for (const o of bad) expect(negotiate([o], limits, 5)).toEqual({ blksize: 512, windowsize: 1, oack: [] });
  });

  it('accepts the boundary values', () => {
    expect(negotiate([['timeout', '1']], limits).timeout).toBe(1);
    expect(negotiate([['timeout', '255']], limits).timeout).toBe(255);
    expect(negotiate([['windowsize', '65535']], { maxBlksize: 512, maxWindowsize: 65535 }).windowsize).toBe(65535);
    expect(negotiate([['windowsize', '1']], limits).oack).toEqual([['windowsize', '1']]);
  });

  it('caps windowsize to the server maximum, first of repeated options wins', () => {
    expect(negotiate([['windowsize', '1000']], limits).windowsize).toBe(64);
    const n = negotiate(
      [
        ['blksize', '1024'],
        ['blksize', '512'],
      ],
      limits,
    );
    expect(n.blksize).toBe(1024);
    expect(n.oack).toEqual([['blksize', '1024']]);
  });

  it('echoes the client tsize on WRQ (no size given)', () => {
    expect(negotiate([['tsize', '12345']], limits).oack).toEqual([['tsize', '12345']]);
  });
});

describe('netascii', () => {
  it('LF -> CR LF, bare CR -> CR NUL', () => {
    expect(toNetascii(Buffer.from('a\nb\rc\r\n'))).toEqual(Buffer.from('a\r\nb\r\0c\r\0\r\n', 'latin1'));
    const plain = Buffer.from('no newlines');
    expect(toNetascii(plain)).toBe(plain);
  });
});
