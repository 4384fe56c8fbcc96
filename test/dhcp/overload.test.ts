/**
 * Option overload (RFC 2132 9.3, option 52) and long/split options (RFC 3396), both ways: replies too large for
 * the client's option 57 (else 576) spill into file, then sname; overloaded requests are read in the order
 * options, file, sname (RFC 2131 4.1).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { decode, emptyPacket, encodeWithReport, HEADER_LEN } from '../../src/dhcp/packet.js';
import { ip4, msgType, request, SUBNET, type TestEnv, testEnv } from './helpers.js';

const reply = (opts: [number, Buffer][]) => {
  const p = emptyPacket(2);
  p.options.set(Opt.MessageType, Buffer.from([MessageType.ACK]));
  p.options.set(Opt.ServerId, ip4('10.0.0.1'));
  for (const [c, v] of opts) p.options.set(c, v);
  return p;
};

/** Options of one area (options field, file or sname) in wire order, split pieces kept apart. */
function areaOptions(buf: Buffer, start: number, end: number): [number, number][] {
  const out: [number, number][] = [];
  for (let i = start; i < end && buf[i] !== 255; ) {
    if (buf[i] === 0) {
      i++;
      continue;
    }
    out.push([buf[i]!, buf[i + 1]!]);
    i += 2 + buf[i + 1]!;
  }
  return out;
}

describe('RFC 2132 9.3 option overload, encoding', () => {
  it('spills into file then sname within 576 bytes, 53 first and 52 after it, every option decodable', () => {
    const opts: [number, Buffer][] = [];
    for (let c = 200; c < 207; c++) opts.push([c, Buffer.alloc(60, c)]);
    const { buf, dropped } = encodeWithReport(reply(opts), 576);
    expect(dropped).toEqual([]);
    expect(buf.length).toBeLessThanOrEqual(576 - 28);
    const main = areaOptions(buf, HEADER_LEN + 4, buf.length);
    expect(main[0]).toEqual([Opt.MessageType, 1]);
    expect(main[1]).toEqual([Opt.Overload, 1]);
    expect(buf[HEADER_LEN + 4 + 5]).toBe(3); // file and sname both used
    expect(areaOptions(buf, 108, 236).length).toBeGreaterThan(0);
    expect(areaOptions(buf, 44, 108).length).toBeGreaterThan(0);
    const d = decode(buf);
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    for (const [c, v] of opts) expect(d.packet.options.get(c)).toEqual(v);
    expect(d.packet.file).toBe('');
    expect(d.packet.sname).toBe('');
  });

  it('leaves a boot file name in file alone and uses sname only (overload 2)', () => {
    const p = reply([
      [200, Buffer.alloc(250, 1)],
      [201, Buffer.alloc(50, 2)],
    ]);
    p.file = 'undionly.kpxe';
    const { buf, dropped } = encodeWithReport(p, 576);
    expect(dropped).toEqual([]);
    const d = decode(buf);
    expect(d.ok && d.packet.options.get(Opt.Overload)).toEqual(Buffer.from([2]));
    if (!d.ok) return;
    expect(d.packet.file).toBe('undionly.kpxe');
    expect(d.packet.options.get(201)).toEqual(Buffer.alloc(50, 2));
    expect(areaOptions(buf, 44, 108)).toEqual([[201, 50]]);
  });

  it('with file and sname both in use, drops what fits nowhere, says which, and sets no 52', () => {
    const p = reply([
      [200, Buffer.alloc(250, 1)],
      [201, Buffer.alloc(100, 2)],
    ]);
    p.file = 'boot.efi';
    p.sname = 'tftp.example';
    const { buf, dropped } = encodeWithReport(p, 576);
    expect(dropped).toEqual([201]);
    const d = decode(buf);
    expect(d.ok && d.packet.options.has(Opt.Overload)).toBe(false);
    expect(d.ok && d.packet.sname).toBe('tftp.example');
  });

  it('splits an option that fits no area whole over options, file and sname in that order (RFC 3396)', () => {
    const big = Buffer.from(Array.from({ length: 270 }, (_, i) => i & 255));
    const p = reply([
      [200, Buffer.alloc(200, 9)],
      [Opt.DomainSearch, big],
    ]);
    const { buf, dropped } = encodeWithReport(p, 576);
    expect(dropped).toEqual([]);
    const pieces = [
      ...areaOptions(buf, HEADER_LEN + 4, buf.length),
      ...areaOptions(buf, 108, 236),
      ...areaOptions(buf, 44, 108),
    ].filter(([c]) => c === Opt.DomainSearch);
    expect(pieces.length).toBeGreaterThan(1);
    const d = decode(buf);
    expect(d.ok && d.packet.options.get(Opt.DomainSearch)).toEqual(big);
  });

  it("honours a larger option 57: no overload when the options fit the client's size", () => {
    const opts: [number, Buffer][] = [];
    for (let c = 200; c < 207; c++) opts.push([c, Buffer.alloc(60, c)]);
    const { buf } = encodeWithReport(reply(opts), 1500);
    const d = decode(buf);
    expect(d.ok && d.packet.options.has(Opt.Overload)).toBe(false);
    expect(buf.length).toBeGreaterThan(576 - 28);
  });
});

describe('overload round trip (500 random replies, seeded)', () => {
  it('every option not reported dropped decodes intact, within the size, boot fields kept', () => {
    let seed = 13;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let overloadedSeen = 0;
    let splitSeen = 0;
    for (let i = 0; i < 500; i++) {
      const opts: [number, Buffer][] = [];
      const n = 1 + rnd(12);
      for (let k = 0; k < n; k++) opts.push([200 + k, Buffer.alloc(rnd(300), k + 1)]);
      const p = reply(opts);
      if (rnd(3) === 0) p.file = 'ipxe.efi';
      if (rnd(3) === 0) p.sname = 'boot-server';
      const max = rnd(2) ? 576 : 576 + rnd(900);
      const { buf, dropped } = encodeWithReport(p, max);
      expect(buf.length).toBeLessThanOrEqual(Math.max(576, max) - 28);
      const d = decode(buf);
      expect(d.ok).toBe(true);
      if (!d.ok) continue;
      for (const [c, v] of opts) if (!dropped.includes(c)) expect(d.packet.options.get(c)).toEqual(v);
      for (const c of dropped) expect(d.packet.options.has(c)).toBe(false);
      const ov = d.packet.options.get(Opt.Overload)?.[0] ?? 0;
      if (p.file) {
        expect(ov & 1).toBe(0);
        expect(d.packet.file).toBe('ipxe.efi');
      }
      if (p.sname) {
        expect(ov & 2).toBe(0);
        expect(d.packet.sname).toBe('boot-server');
      }
      if (ov) overloadedSeen++;
      const areas = [[HEADER_LEN + 4, buf.length], ...(ov & 1 ? [[108, 236]] : []), ...(ov & 2 ? [[44, 108]] : [])];
      const pieces = areas.flatMap(([a, b]) => areaOptions(buf, a!, b!)).filter(([c]) => c >= 200).length;
      const whole = opts
        .filter(([c]) => !dropped.includes(c))
        .reduce((t, [, v]) => t + Math.max(1, Math.ceil(v.length / 255)), 0);
      if (pieces > whole) splitSeen++;
    }
    expect(overloadedSeen).toBeGreaterThan(50);
    expect(splitSeen).toBeGreaterThan(0);
  });
});

describe('RFC 2131 4.1 / RFC 3396 7 overloaded requests, decoding', () => {
  it('joins an option split over options, file and sname in that order (not field order in the packet)', () => {
    const b = Buffer.alloc(HEADER_LEN + 4 + 16);
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b.writeUInt32BE(0x63825363, HEADER_LEN);
    Buffer.from([53, 1, 1, 52, 1, 3, 12, 2, 0x61, 0x62, 255]).copy(b, HEADER_LEN + 4);
    Buffer.from([12, 2, 0x65, 0x66, 255]).copy(b, 44); // sname: last
    Buffer.from([12, 2, 0x63, 0x64, 255]).copy(b, 108); // file: second
    const d = decode(b);
    expect(d.ok && d.packet.options.get(Opt.Hostname)?.toString()).toBe('abcdef');
  });
});

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

describe('overload through the server', () => {
  it('reads a DISCOVER whose 61 and 50 sit in file and sname, and overloads an OFFER too large for 576', async () => {
    const many = Array.from({ length: 6 }, (_, i) => ({ code: 224 + i, value: `hex:${'ab'.repeat(70)}` }));
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', { ...SUBNET, options: [...SUBNET.options, ...many] });
    });
    const cid = Buffer.from([1, 0x52, 0x54, 0, 0, 9, 1]);
    const d = request(MessageType.DISCOVER, '52:54:00:00:09:01', { flags: 0x8000 }, [[Opt.Overload, Buffer.from([3])]]);
    // Built by hand (our encoder only overloads when it must): header, then 53 and 52 only in the options.
    const head = Buffer.alloc(HEADER_LEN + 4 + 64);
    encodeWithReport(d, 576).buf.copy(head, 0, 0, HEADER_LEN + 4);
    Buffer.from([53, 1, MessageType.DISCOVER, 52, 1, 3, 255]).copy(head, HEADER_LEN + 4);
    Buffer.concat([Buffer.from([61, cid.length]), cid, Buffer.from([255])]).copy(head, 108);
    Buffer.concat([Buffer.from([50, 4]), ip4('10.99.1.150'), Buffer.from([255])]).copy(head, 44);
    await env.client.send(head, env.p.port);
    const offer = await env.client.wait(d.xid);
    expect(msgType(offer)).toBe(MessageType.OFFER);
    expect(offer!.yiaddr).toBe('10.99.1.150');
    expect(offer!.options.get(Opt.ClientId)).toEqual(cid);
    expect(offer!.options.get(Opt.Overload)?.[0]).toBeGreaterThan(0);
    for (const m of many) expect(offer!.options.get(m.code)).toEqual(Buffer.alloc(70, 0xab));
    const wire = env.client.raw.at(-1)!;
    expect(wire.length).toBeLessThanOrEqual(576 - 28);
  });
});
