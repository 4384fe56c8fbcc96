import { describe, expect, it } from 'vitest';
import {
  decodeSubOptions,
  decodeUserClass,
  decodeUuid,
  encodeOptionValue,
  MessageType,
  Opt,
  substituteFields,
} from '../../src/dhcp/options.js';
import { decode, emptyPacket, encode, encodeWithReport, HEADER_LEN, macBytes, macOf } from '../../src/dhcp/packet.js';
import { request } from './helpers.js';

const withOptions = (raw: number[], opts: { file?: Buffer; sname?: Buffer } = {}) => {
  const b = Buffer.alloc(HEADER_LEN + 4 + raw.length);
  b[0] = 1;
  b[1] = 1;
  b[2] = 6;
  b.writeUInt32BE(0x63825363, HEADER_LEN);
  Buffer.from(raw).copy(b, HEADER_LEN + 4);
  opts.sname?.copy(b, 44);
  opts.file?.copy(b, 108);
  return b;
};

describe('DHCP codec', () => {
  it('round-trips header fields and options', () => {
    const p = request(MessageType.DISCOVER, '52:54:00:ab:cd:ef', { giaddr: '10.0.0.1', flags: 0x8000, secs: 3 }, [
      [Opt.ClientArch, Buffer.from([0, 7])],
    ]);
    const d = decode(encode(p));
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(macOf(d.packet)).toBe('52:54:00:ab:cd:ef');
    expect(d.packet.giaddr).toBe('10.0.0.1');
    expect(d.packet.flags).toBe(0x8000);
    expect(d.packet.options.get(Opt.ClientArch)).toEqual(Buffer.from([0, 7]));
    expect(encode(p).length).toBeGreaterThanOrEqual(300);
  });

  it('joins repeated options (RFC 3396) and splits long ones', () => {
    const d = decode(withOptions([53, 1, 1, 77, 2, 65, 66, 77, 2, 67, 68, 255]));
    expect(d.ok && d.packet.options.get(77)?.toString()).toBe('ABCD');
    const p = emptyPacket(2);
    p.options.set(Opt.MessageType, Buffer.from([MessageType.ACK]));
    p.options.set(Opt.DomainSearch, Buffer.alloc(600, 7));
    const buf = encode(p, 1500);
    const again = decode(buf);
    expect(again.ok && again.packet.options.get(Opt.DomainSearch)?.length).toBe(600);
  });

  it('reads options overloaded into file and sname (52), and ignores a 52 inside them (no loops)', () => {
    const file = Buffer.from([12, 3, 0x61, 0x62, 0x63, 52, 1, 3, 255]);
    const sname = Buffer.from([15, 2, 0x78, 0x79, 255]);
    const d = decode(withOptions([53, 1, 1, 52, 1, 3, 255], { file, sname }));
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(d.packet.options.get(Opt.Hostname)?.toString()).toBe('abc');
    expect(d.packet.options.get(Opt.DomainName)?.toString()).toBe('xy');
    expect(d.packet.file).toBe('');
    expect(d.packet.sname).toBe('');
  });

  it('spills into file/sname with option 52 when the options do not fit in 576 bytes', () => {
    const p = emptyPacket(2);
    p.options.set(Opt.MessageType, Buffer.from([MessageType.OFFER]));
    for (let c = 200; c < 204; c++) p.options.set(c, Buffer.alloc(80, c));
    const { buf, dropped } = encodeWithReport(p, 576);
    expect(buf.length).toBeLessThanOrEqual(576 - 28);
    const d = decode(buf);
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(d.packet.options.get(Opt.Overload)?.[0]).toBeGreaterThan(0);
    for (let c = 200; c < 204; c++)
      if (!dropped.includes(c)) expect(d.packet.options.get(c)).toEqual(Buffer.alloc(80, c));
    expect([...d.packet.options.keys()][0]).toBe(Opt.MessageType);
  });

  it('returns typed errors, never throws', () => {
    expect(decode(Buffer.alloc(10))).toMatchObject({ ok: false, code: 'too-short' });
    const noMagic = withOptions([53, 1, 1]);
    noMagic.writeUInt32BE(0, HEADER_LEN);
    expect(decode(noMagic)).toMatchObject({ ok: false, code: 'bad-magic' });
    expect(decode(withOptions([53, 1, 1, 12, 200, 1]))).toMatchObject({ ok: false, code: 'option-overrun' });
    expect(decode(withOptions([12, 1, 65, 255]))).toMatchObject({ ok: false, code: 'no-message-type' });
    expect(decode(withOptions([53, 1, 1, 52, 1, 9]))).toMatchObject({ ok: false, code: 'bad-overload' });
    const bad = withOptions([53, 1, 1]);
    bad[2] = 17;
    expect(decode(bad)).toMatchObject({ ok: false, code: 'bad-hlen' });
  });

  it('decodes PXE options: 77 bare and RFC 3004, 97 UUID, 175 sub-options', () => {
    expect(decodeUserClass(Buffer.from('iPXE'))).toEqual(['iPXE']);
    expect(decodeUserClass(Buffer.from([4, 0x69, 0x50, 0x58, 0x45]))).toEqual(['iPXE']);
    const uuid = Buffer.concat([Buffer.from([0]), Buffer.from('00112233445566778899aabbccddeeff', 'hex')]);
    expect(decodeUuid(uuid)).toBe('00112233-4455-6677-8899-aabbccddeeff');
    expect(decodeSubOptions(Buffer.from([176, 1, 1, 255]))?.get(176)).toEqual(Buffer.from([1]));
    expect(decodeSubOptions(Buffer.from([176, 9, 1]))).toBeUndefined();
  });

  it('encodes operator option values by type, and says what is wrong', () => {
    expect(encodeOptionValue(3, '10.0.0.1')).toEqual(Buffer.from([10, 0, 0, 1]));
    expect(encodeOptionValue(6, ['1.1.1.1', '8.8.8.8']).length).toBe(8);
    expect(encodeOptionValue(26, 1500)).toEqual(Buffer.from([5, 220]));
    expect(encodeOptionValue(12, 'web1')).toEqual(Buffer.from('web1'));
    expect(encodeOptionValue(250, 'hex:01:02')).toEqual(Buffer.from([1, 2]));
    expect(() => encodeOptionValue(3, 'not-an-ip')).toThrow(/not an IPv4 address/);
    expect(() => encodeOptionValue(26, 70000)).toThrow(/does not fit in 16 bits/);
    expect(
      substituteFields('{{machine.name}}.{{ subnet.name }}', { machine: { name: 'a' }, subnet: { name: 'lab' } }),
    ).toBe('a.lab');
  });

  it('macBytes/macOf agree', () => {
    const p = emptyPacket(1);
    p.chaddr = macBytes('00:11:22:33:44:55');
    expect(macOf(p)).toBe('00:11:22:33:44:55');
  });
});
