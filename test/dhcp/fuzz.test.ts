/**
 * Fuzz: 100,000+ random and mutated packets (truncated, wrong hlen, option lengths past the end, overload
 * loops, flipped bytes) at the decoder, then 100,000 at a live server: no throw, no crash, no reply to garbage,
 * and the server still serves a real client afterwards.
 */
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageType } from '../../src/dhcp/options.js';
import { decode, encode, HEADER_LEN } from '../../src/dhcp/packet.js';
import { msgType, readPcapUdp, type TestEnv, testEnv } from './helpers.js';

const seeds = ['bios-ipxe-virtio', 'uefi-native-pxe-tftp', 'proxy-uefi-native-pxe', 'uefi-httpboot'].flatMap((n) =>
  readPcapUdp(fileURLToPath(new URL(`../fixtures/dhcp/${n}.pcap`, import.meta.url))).map((u) => u.payload),
);

type Mutation = (b: Buffer, r: number[]) => Buffer;
const mutations: Mutation[] = [
  (b, [a]) => b.subarray(0, a! % (b.length + 1)), // truncated
  (b, [a, v]) => {
    const c = Buffer.from(b);
    c[a! % c.length] = v! & 255; // one byte flipped
    return c;
  },
  (b, [v]) => {
    const c = Buffer.from(b);
    c[2] = v! & 255; // hlen
    return c;
  },
  (b, [a, v]) => {
    // an option length running past the end
    const c = Buffer.from(b);
    const i = HEADER_LEN + 4 + (a! % Math.max(1, c.length - HEADER_LEN - 5));
    if (i + 1 < c.length) c[i + 1] = 200 + (v! % 56);
    return c;
  },
  (b, [v]) => {
    // overload loop: 52 everywhere, also inside file and sname
    const c = Buffer.from(b);
    const loop = Buffer.from([52, 1, (v! % 4) as number, 52, 1, 3, 255]);
    loop.copy(c, 44);
    loop.copy(c, 108);
    return Buffer.concat([c.subarray(0, HEADER_LEN + 4), Buffer.from([53, 1, 1]), loop]);
  },
  (b, [a]) => Buffer.concat([b, Buffer.alloc(a! % 300, a! & 255)]), // trailing junk
  (b) => Buffer.concat([b.subarray(0, HEADER_LEN + 4), Buffer.from([53, 1])]), // option without value
];

const packet = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 700 }).map((a) => Buffer.from(a)),
  fc
    .tuple(
      fc.constantFrom(...seeds),
      fc.integer({ min: 0, max: mutations.length - 1 }),
      fc.array(fc.nat(), { minLength: 2, maxLength: 2 }),
      fc.nat(3),
    )
    .map(([seed, m, r, times]) => {
      let b = seed;
      for (let i = 0; i <= times; i++)
        b = mutations[(m + i) % mutations.length]!(
          b,
          r.map((x) => x + i * 7),
        );
      return b;
    }),
);

describe('fuzz', () => {
  it('the decoder never throws on 100,000 random and mutated packets, and what it accepts re-encodes', () => {
    let accepted = 0;
    fc.assert(
      fc.property(packet, (b) => {
        const d = decode(b);
        if (d.ok) {
          accepted++;
          const again = decode(encode(d.packet, 1500));
          if (!again.ok) return false;
        } else if (typeof d.message !== 'string') return false;
        return true;
      }),
      { numRuns: 100_000 },
    );
    expect(accepted).toBeGreaterThan(0);
  });

  describe('a live server', () => {
    let env: TestEnv;
    beforeAll(async () => {
      env = await testEnv(undefined, { malformedLogIntervalMs: 1000 });
    });
    afterAll(async () => {
      await env.close();
    });

    it('survives 100,000 packets, never replies to garbage, and still serves a real client', async () => {
      const samples = fc.sample(packet, { numRuns: 100_000, seed: 42 });
      const garbage = samples.filter((b) => !decode(b).ok);
      const valid = samples.filter((b) => decode(b).ok);
      // Paced by the server's own receive count so the socket buffer does not overflow (bounded wait per batch).
      const send = async (list: Buffer[]) => {
        const start = env.server.stats.received;
        for (let i = 0; i < list.length; i += 100) {
          await Promise.all(
            list
              .slice(i, i + 100)
              .map((b) => new Promise<void>((res) => env.client.socket.send(b, env.p.port, '127.0.0.1', () => res()))),
          );
          const until = Date.now() + 200;
          while (env.server.stats.received - start < i + 90 && Date.now() < until)
            await new Promise((r) => setImmediate(r));
        }
      };
      const before = env.client.raw.length;
      await send(garbage);
      await new Promise((r) => setTimeout(r, 300));
      expect(env.client.raw.length - before).toBe(0);
      expect(env.server.stats.malformed).toBeGreaterThan(garbage.length * 0.9);
      expect(garbage.length + valid.length).toBe(100_000);
      // Mutated packets that still decode are requests like any other: answered or not, never a crash.
      await send(valid);
      await new Promise((r) => setTimeout(r, 300));
      const { ack } = await env.dora('52:54:00:ff:ff:01');
      expect(msgType(ack)).toBe(MessageType.ACK);
    }, 120_000);
  });
});
