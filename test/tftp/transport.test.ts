/**
 * The same transfers through each transfer socket: the native one (udpOpen, windows sent with UDP GSO or with
 * sendmmsg) and the dgram fallback used when the helper is not built. Windows that straddle chunk boundaries, a short
 * final block, an empty final block, losses, a packet from a wrong TID (RFC 1350 section 4) and a client that
 * vanishes (ICMP port unreachable).
 */
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { afterAll, describe, expect, it } from 'vitest';
import { decodePacket, encodeAck, encodeRequest } from '../../src/tftp/codec.js';
import { startTftpServer, type TftpServer, type TftpServerOptions } from '../../src/tftp/server.js';
import { bufferSource } from '../../src/tftp/source.js';
import { transferAddon } from '../../src/tftp/transport.js';
import { tftpGet } from './client.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const files: Record<string, Buffer> = {
  'odd.bin': randomBytes(3 * 1024 * 1024 + 777),
  'exact.bin': randomBytes(1468 * 200), // the final DATA is empty
};
const servers: TftpServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

const variants: Array<[string, Partial<TftpServerOptions>, boolean]> = [
  ['dgram fallback', { nativeSockets: false }, true],
  ['native, sendmmsg', { nativeSockets: true, gso: false }, transferAddon() !== undefined],
  ['native, UDP GSO', { nativeSockets: true, gso: true }, transferAddon() !== undefined],
];

describe.each(variants)('%s', (_name, extra, available) => {
  async function server() {
    const s = await startTftpServer({
      source: bufferSource(files),
      address: '127.0.0.1',
      port: 0,
      minTimeoutMs: 20,
      ...extra,
    });
    servers.push(s);
    return s;
  }

  it.skipIf(!available).each([
    ['odd.bin', 512, 1],
    ['odd.bin', 1468, 16],
    ['odd.bin', 1000, 64],
    ['exact.bin', 1468, 16],
    ['exact.bin', 1468, 7],
  ])('%s blksize %i windowsize %i: bytes match', async (file, blksize, windowsize) => {
    const s = await server();
    const r = await tftpGet(s.port, file, {
      options: [
        ['blksize', String(blksize)],
        ['windowsize', String(windowsize)],
      ],
      limitMs: 20_000,
    });
    expect(r.error).toBeUndefined();
    expect(sha(r.data)).toBe(sha(files[file]));
  });

  it.skipIf(!available)('windows with losses still complete', async () => {
    const s = await server();
    const r = await tftpGet(s.port, 'odd.bin', {
      options: [
        ['blksize', '1468'],
        ['windowsize', '16'],
      ],
      dropData: (_b, n) => n % 53 === 7,
      limitMs: 20_000,
    });
    expect(sha(r.data)).toBe(sha(files['odd.bin']));
    expect(s.stats.retransmits).toBeGreaterThan(0);
  });

  // On dgram the socket is connected: the kernel drops a stranger's packets (answering ICMP, not ERROR 5).
  it.skipIf(!available || extra.nativeSockets === false)(
    'a packet from a wrong TID gets ERROR 5, the transfer goes on',
    async () => {
      const s = await server();
      const bind = async () => {
        const c = dgram.createSocket('udp4');
        await new Promise<void>((r) => c.bind(0, '127.0.0.1', () => r()));
        return c;
      };
      const next = (c: dgram.Socket) =>
        new Promise<{ msg: Buffer; port: number }>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('no reply')), 2000);
          c.once('message', (msg, from) => {
            clearTimeout(t);
            resolve({ msg, port: from.port });
          });
        });
      const client = await bind();
      const stray = await bind();
      try {
        let reply = next(client);
        client.send(encodeRequest('RRQ', 'odd.bin', 'octet'), s.port, '127.0.0.1');
        const first = await reply;
        expect(decodePacket(first.msg)).toMatchObject({ ok: true, packet: { op: 'DATA', block: 1 } });
        // Someone else acknowledges block 1 on the transfer's port.
        const strayReply = next(stray);
        stray.send(encodeAck(1), first.port, '127.0.0.1');
        expect(decodePacket((await strayReply).msg)).toMatchObject({ ok: true, packet: { op: 'ERROR', code: 5 } });
        // An ERROR from a stranger gets no answer (two servers must not answer each other's errors for ever).
        let answered = false;
        stray.once('message', () => {
          answered = true;
        });
        stray.send(Buffer.from('\0\x05\0\x05x\0', 'latin1'), first.port, '127.0.0.1');
        // The transfer did not move on the stranger's ACK, and goes on with the client's.
        reply = next(client);
        client.send(encodeAck(1), first.port, '127.0.0.1');
        expect(decodePacket((await reply).msg)).toMatchObject({ ok: true, packet: { op: 'DATA', block: 2 } });
        expect(answered).toBe(false);
        expect(s.activeTransfers()).toBe(1);
      } finally {
        client.close();
        stray.close();
      }
    },
  );

  it.skipIf(!available)('a client that vanishes ends the transfer (ICMP port unreachable)', async () => {
    const s = await server();
    const c = dgram.createSocket('udp4');
    await new Promise<void>((r) => c.bind(0, '127.0.0.1', () => r()));
    const first = new Promise<void>((r) => c.once('message', () => r()));
    c.send(encodeRequest('RRQ', 'odd.bin', 'octet'), s.port, '127.0.0.1');
    await first;
    c.close();
    for (let i = 0; i < 200 && s.activeTransfers() > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(s.activeTransfers()).toBe(0);
    expect(s.stats.transfersFailed).toBe(1);
  });
});
