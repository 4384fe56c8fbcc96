/** Ready-to-send DATA packets and their cache shared between transfers of the same file (src/tftp/layout.ts). */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { decodePacket } from '../../src/tftp/codec.js';
import { layoutPackets, layoutPacketsNow, packetCache } from '../../src/tftp/layout.js';
import { startTftpServer, type TftpServer } from '../../src/tftp/server.js';
import type { TftpFile, TftpSource } from '../../src/tftp/source.js';
import { tftpGet } from './client.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('layoutPackets', () => {
  it('lays blocks out back to back with their (wrapped) numbers, the last one short', () => {
    const data = randomBytes(2 * 8 + 3);
    const out = layoutPackets(data, 65535, 3, 8);
    expect(out.length).toBe(3 * 12);
    const blocks = [0, 1, 2].map((i) => decodePacket(out.subarray(i * 12, i === 2 ? i * 12 + 4 + 3 : (i + 1) * 12)));
    expect(blocks.map((d) => (d.ok && d.packet.op === 'DATA' ? d.packet.block : -1))).toEqual([65535, 0, 1]);
    const payload = Buffer.concat(
      blocks.map((d) => (d.ok && d.packet.op === 'DATA' ? d.packet.data : Buffer.alloc(0))),
    );
    expect(payload.equals(data)).toBe(true);
  });
});

describe('layoutPacketsNow (native preadv2 from the page cache)', () => {
  it.skipIf(!native.caps.readPackets)(
    'gives the same packets as layoutPackets, at the end of a file too, and declines what is not there',
    async () => {
      const { mkdtemp, open, rm, writeFile } = await import('node:fs/promises');
      const { tmpdir } = await import('node:os');
      const path = await import('node:path');
      const dir = await mkdtemp(path.join(tmpdir(), 'plinth-packets-'));
      try {
        const blksize = 512;
        const data = randomBytes(blksize * 2500 + 77); // > 1024 blocks: more than one preadv2
        await writeFile(path.join(dir, 'f'), data);
        const fh = await open(path.join(dir, 'f'), 'r');
        try {
          // Whole chunks in the middle, with block numbers wrapping past 65535.
          const mid = layoutPacketsNow(fh.fd, 100 * blksize, 2048 * blksize, 65500, 2048, blksize);
          expect(mid?.equals(layoutPackets(data.subarray(100 * blksize), 65500, 2048, blksize))).toBe(true);
          // The final chunk: a short last block.
          const tail = layoutPacketsNow(fh.fd, 2490 * blksize, 10 * blksize + 77, 2491, 11, blksize);
          expect(tail).toBeDefined();
          const want = layoutPackets(data.subarray(2490 * blksize), 2491, 11, blksize);
          const used = 10 * (4 + blksize) + 4 + 77;
          expect(tail!.subarray(0, used).equals(want.subarray(0, used))).toBe(true);
          // More bytes expected than the file holds (it shrank): declined, the caller reads asynchronously.
          expect(layoutPacketsNow(fh.fd, 2490 * blksize, 11 * blksize, 2491, 11, blksize)).toBeUndefined();
        } finally {
          await fh.close();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});

describe('packetCache', () => {
  it('makes each key once, evicts the least recently used past its byte bound, forgets failures', async () => {
    const c = packetCache(300);
    let made = 0;
    const make = (n: number) => async () => {
      made++;
      return Buffer.alloc(n);
    };
    await c.get('a', 100, make(100));
    await c.get('a', 100, make(100));
    expect(made).toBe(1);
    await c.get('b', 100, make(100));
    await c.get('c', 100, make(100));
    await c.get('a', 100, make(100)); // refresh a: b is now the oldest
    await c.get('d', 100, make(100));
    expect(c.bytes).toBe(300);
    expect(made).toBe(4);
    await c.get('a', 100, make(100));
    expect(made).toBe(4);
    await c.get('b', 100, make(100));
    expect(made).toBe(5);
    await expect(c.get('x', 10, () => Promise.reject(new Error('disk')))).rejects.toThrow('disk');
    await new Promise((r) => setImmediate(r));
    await c.get('x', 10, make(10));
    expect(made).toBe(6);
  });
});

describe('shared between transfers', () => {
  const servers: TftpServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  it('clients fetching the same file at the same blksize read each chunk once', async () => {
    const content = randomBytes(1024 * 1024 + 99);
    let reads = 0;
    const file = (id: string | undefined): TftpFile => ({
      status: 'ok',
      id,
      size: content.length,
      read: async (pos, len) => {
        reads++;
        return content.subarray(pos, Math.min(content.length, pos + len));
      },
      close: () => {},
    });
    const source: TftpSource = { open: async (p) => file(p === 'shared.bin' ? 'same-content' : undefined) };
    const s = await startTftpServer({ source, address: '127.0.0.1', port: 0 });
    servers.push(s);
    const get = (name: string) =>
      tftpGet(s.port, name, {
        options: [
          ['blksize', '1468'],
          ['windowsize', '16'],
        ],
        limitMs: 20_000,
      });
    const shared = await Promise.all([get('shared.bin'), get('shared.bin'), get('shared.bin')]);
    for (const r of shared) expect(sha(r.data)).toBe(sha(content));
    const sharedReads = reads;
    reads = 0;
    const unshared = await Promise.all([get('a.bin'), get('b.bin'), get('c.bin')]);
    for (const r of unshared) expect(sha(r.data)).toBe(sha(content));
    // Without an id every transfer reads for itself.
    expect(reads).toBe(3 * sharedReads);
  });
});
