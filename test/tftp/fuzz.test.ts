import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodePacket, encodePacket, encodeRequest, type TftpPacket } from '../../src/tftp/codec.js';
import { startTftpServer } from '../../src/tftp/server.js';
import { bufferSource } from '../../src/tftp/source.js';
import { tftpGet } from './client.js';

const name = fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\0'));
const optName = fc.constantFrom('blksize', 'tsize', 'timeout', 'windowsize', 'BLKSIZE', 'multicast', 'x');
const optValue = fc.oneof(
  fc.integer({ min: -5, max: 70000 }).map(String),
  fc.string({ maxLength: 8 }).filter((s) => !s.includes('\0')),
);
const packet: fc.Arbitrary<TftpPacket> = fc.oneof(
  fc.record({
    op: fc.constantFrom('RRQ' as const, 'WRQ' as const),
    filename: name,
    mode: fc.constantFrom('octet', 'netascii', 'mail', 'x'),
    options: fc.array(fc.tuple(optName, optValue), { maxLength: 5 }),
  }),
  fc.record({
    op: fc.constant('DATA' as const),
    block: fc.integer({ min: 0, max: 65535 }),
    data: fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
  }),
  fc.record({ op: fc.constant('ACK' as const), block: fc.integer({ min: 0, max: 65535 }) }),
  fc.record({ op: fc.constant('ERROR' as const), code: fc.integer({ min: 0, max: 65535 }), message: name }),
  fc.record({ op: fc.constant('OACK' as const), options: fc.array(fc.tuple(optName, optValue), { maxLength: 4 }) }),
);

/** A valid packet with a few bytes flipped, cut, or extended: the nastiest inputs sit next to valid ones. */
const mutated: fc.Arbitrary<Buffer> = fc
  .tuple(
    packet,
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
    fc.option(fc.nat()),
    fc.uint8Array({ maxLength: 8 }),
  )
  .map(([p, flips, cut, tail]) => {
    let b = Buffer.from(encodePacket(p));
    for (const [pos, v] of flips) if (b.length > 0) b[pos % b.length] = v;
    if (cut !== null) b = b.subarray(0, cut % (b.length + 1));
    return Buffer.concat([b, Buffer.from(tail)]);
  });
const random = fc.uint8Array({ maxLength: 700 }).map((a) => Buffer.from(a));
const anyBytes = fc.oneof(random, mutated);

describe('fuzz', () => {
  it('decoder: 120,000 random and mutated packets never throw, results are well-typed', () => {
    fc.assert(
      fc.property(anyBytes, (buf) => {
        const d = decodePacket(buf);
        if (d.ok) {
          expect(['RRQ', 'WRQ', 'DATA', 'ACK', 'ERROR', 'OACK']).toContain(d.packet.op);
        } else expect(typeof d.error).toBe('string');
      }),
      { numRuns: 120_000 },
    );
  });

  it('decoder: every encoded packet decodes, and decoding is a fixed point after one normalisation', () => {
    fc.assert(
      fc.property(packet, (p) => {
        const d = decodePacket(encodePacket(p));
        expect(d.ok).toBe(true);
        if (!d.ok) return;
        // Option names and mode come back lower-cased (RFC 2347: case-insensitive); nothing else changes.
        expect(d.packet.op).toBe(p.op);
        expect(decodePacket(encodePacket(d.packet))).toEqual(d);
      }),
      { numRuns: 20_000 },
    );
  });

  it('live server: 100,000 garbage packets get no reply, mutated requests never crash it, it still serves', async () => {
    const content = randomBytes(200_000);
    const s = await startTftpServer({
      source: bufferSource({ 'boot.bin': content }),
      address: '127.0.0.1',
      port: 0,
      timeoutMs: 200,
      maxRetries: 1,
    });
    const sock = dgram.createSocket('udp4');
    let garbageReplies = 0;
    let phase: 'garbage' | 'mutated' = 'garbage';
    sock.on('message', () => {
      if (phase === 'garbage') garbageReplies++;
    });
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const send = (b: Buffer) => new Promise<void>((r) => sock.send(b, s.port, '127.0.0.1', () => r()));

    // Garbage: whatever the decoder refuses, or well-formed packets that are not requests (DATA/ACK/ERROR/OACK on
    // the listening port). None of it may be answered.
    const garbage = fc.sample(
      anyBytes.filter((b) => {
        const d = decodePacket(b);
        return !d.ok || (d.packet.op !== 'RRQ' && d.packet.op !== 'WRQ');
      }),
      { numRuns: 100_000, seed: 42 },
    );
    let processedBefore = 0;
    for (let i = 0; i < garbage.length; i += 200) {
      await Promise.all(garbage.slice(i, i + 200).map(send));
      // Let the server drain its socket so the packets are processed, not dropped by the kernel.
      for (let w = 0; w < 100; w++) {
        const processed = s.stats.malformed + s.stats.unexpected;
        if (processed >= Math.min(garbage.length, i + 200) - 5) break;
        await new Promise((r) => setImmediate(r));
        if (processed === processedBefore) await new Promise((r) => setTimeout(r, 1));
        processedBefore = processed;
      }
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(garbageReplies).toBe(0);
    // Nearly all reached the server and were counted (a few may be lost in a full socket buffer).
    expect(s.stats.malformed + s.stats.unexpected).toBeGreaterThan(99_000);
    expect(s.stats.transfersStarted).toBe(0);

    // Mutated requests: replies are allowed (errors, OACKs), a crash is not.
    phase = 'mutated';
    const requests = fc.sample(
      fc
        .tuple(
          name,
          fc.array(fc.tuple(optName, optValue), { maxLength: 4 }),
          fc.constantFrom('octet', 'netascii', 'OcTeT', 'mail'),
        )
        .map(([f, o, m]) => encodeRequest('RRQ', f.length % 3 === 0 ? 'boot.bin' : f, m, o)),
      { numRuns: 2_000, seed: 7 },
    );
    for (let i = 0; i < requests.length; i += 100) {
      await Promise.all(requests.slice(i, i + 100).map(send));
      await new Promise((r) => setTimeout(r, 2));
    }
    sock.close();

    const r = await tftpGet(s.port, 'boot.bin', {
      options: [
        ['blksize', '1468'],
        ['windowsize', '8'],
      ],
    });
    expect(createHash('sha256').update(r.data).digest('hex')).toBe(createHash('sha256').update(content).digest('hex'));
    await s.close();
    expect(s.activeTransfers()).toBe(0);
  }, 120_000);
});
