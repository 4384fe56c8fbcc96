import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodePacket, encodeAck, encodeRequest } from '../../src/tftp/codec.js';
import { startTftpServer, type TftpServer, type TftpServerOptions } from '../../src/tftp/server.js';
import { chainSources, fileRootSource, functionSource, type TftpSource } from '../../src/tftp/source.js';
import { exchange, tftpGet } from './client.js';

let dir: string;
let root: string;
const files: Record<string, Buffer> = {};
const servers: TftpServer[] = [];

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function captureLogger() {
  const lines: any[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, dest), lines };
}

/** The client returns on the last DATA; the server learns of it with the final ACK a moment later. */
async function settle(s: TftpServer) {
  for (let i = 0; i < 200 && s.activeTransfers() > 0; i++) await new Promise((r) => setTimeout(r, 5));
}

async function server(extra: Partial<TftpServerOptions> = {}) {
  const src = fileRootSource(root);
  const s = await startTftpServer({ source: src, address: '127.0.0.1', port: 0, minTimeoutMs: 20, ...extra });
  servers.push(s);
  return { s, src };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'plinth-tftp-'));
  root = path.join(dir, 'root');
  await mkdir(path.join(root, 'sub'), { recursive: true });
  const sizes: Record<string, number> = {
    'empty.bin': 0,
    'f511.bin': 511,
    'f512.bin': 512,
    'f513.bin': 513,
    'n1468.bin': 1468 * 7,
    'one-mib.bin': 1 << 20,
    'rollover.bin': 65536 * 8 + 1000, // past block 65535 at blksize 8
  };
  for (const [name, size] of Object.entries(sizes)) {
    files[name] = randomBytes(size);
    await writeFile(path.join(root, name), files[name]);
  }
  files['sub/text.cfg'] = Buffer.from('line one\nline two\r\nend\n');
  await writeFile(path.join(root, 'sub/text.cfg'), files['sub/text.cfg']);
  await writeFile(path.join(dir, 'secret'), 'outside the root');
  await symlink(path.join(dir, 'secret'), path.join(root, 'link-out'));
  await mkdir(path.join(dir, 'uploads'));
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('downloads', () => {
  for (const name of ['empty.bin', 'f511.bin', 'f512.bin', 'f513.bin', 'n1468.bin']) {
    for (const options of [
      [],
      [
        ['blksize', '1468'],
        ['tsize', '0'],
      ],
    ] as Array<Array<[string, string]>>) {
      it(`${name} with ${JSON.stringify(options)}`, async () => {
        const { s } = await server();
        const r = await tftpGet(s.port, name, { options });
        expect(r.error).toBeUndefined();
        expect(sha(r.data)).toBe(sha(files[name]));
        if (options.length > 0) {
          expect(r.oack).toEqual([
            ['blksize', '1468'],
            ['tsize', String(files[name].length)],
          ]);
        } else expect(r.oack).toBeUndefined();
        expect(r.duplicates).toBe(0);
        await settle(s);
        expect(s.stats.transfersCompleted).toBe(1);
      });
    }
  }

  it('windowsize 16 with blksize 1468: whole file, fewer ACKs', async () => {
    const { s } = await server();
    const r = await tftpGet(s.port, 'one-mib.bin', {
      options: [
        ['blksize', '1468'],
        ['windowsize', '16'],
      ],
    });
    expect(r.oack).toEqual([
      ['blksize', '1468'],
      ['windowsize', '16'],
    ]);
    expect(sha(r.data)).toBe(sha(files['one-mib.bin']));
    expect(r.dataPackets).toBe(Math.floor((1 << 20) / 1468) + 1);
  });

  it('windows leave from the socket the moment their ACK arrives (native), and the same bytes without it', async () => {
    const { transferAddon } = await import('../../src/tftp/transport.js');
    for (const armWindows of [true, false]) {
      const { s } = await server({ armWindows });
      const r = await tftpGet(s.port, 'one-mib.bin', {
        options: [
          ['blksize', '1468'],
          ['windowsize', '16'],
        ],
      });
      expect(sha(r.data)).toBe(sha(files['one-mib.bin']));
      expect(r.duplicates).toBe(0);
      // 715 blocks in windows of 16: the first window follows ACK 0 from JavaScript, nearly all others from the socket.
      const native = transferAddon()?.udpArm !== undefined;
      if (armWindows && native) expect(s.stats.windowsOnAck).toBeGreaterThan(35);
      else expect(s.stats.windowsOnAck).toBe(0);
      expect(s.stats.packetsSent).toBe(Math.floor((1 << 20) / 1468) + 2); // + the OACK
    }
  });

  it('rolls block numbers over past 65535 (lock-step, blksize 8)', async () => {
    const { s } = await server();
    const r = await tftpGet(s.port, 'rollover.bin', { options: [['blksize', '8']], limitMs: 60_000 });
    expect(r.error).toBeUndefined();
    expect(r.data.length).toBe(files['rollover.bin'].length);
    expect(sha(r.data)).toBe(sha(files['rollover.bin']));
  }, 60_000);

  it('rolls block numbers over past 65535 with windowsize 64 and losses', async () => {
    const { s } = await server();
    const r = await tftpGet(s.port, 'rollover.bin', {
      options: [
        ['blksize', '8'],
        ['windowsize', '64'],
      ],
      dropData: (_b, n) => n % 997 === 500,
      limitMs: 60_000,
    });
    expect(sha(r.data)).toBe(sha(files['rollover.bin']));
    expect(s.stats.retransmits).toBeGreaterThan(0);
  }, 60_000);

  it('netascii converts line ends', async () => {
    const { s } = await server();
    const r = await tftpGet(s.port, 'sub/text.cfg', { mode: 'netascii', options: [['tsize', '0']] });
    const expected = Buffer.from('line one\r\nline two\r\0\r\nend\r\n', 'latin1');
    expect(r.data).toEqual(expected);
    expect(r.oack).toEqual([['tsize', String(expected.length)]]);
  });

  it('serves rendered content from a function source, per client', async () => {
    const src = chainSources([
      functionSource((p, c) => (p === 'boot.ipxe' ? `#!ipxe\necho hello ${c.address}\n` : undefined)),
      fileRootSource(root),
    ]);
    const s = await startTftpServer({ source: src, address: '127.0.0.1', port: 0 });
    servers.push(s);
    expect((await tftpGet(s.port, 'boot.ipxe')).data.toString()).toBe('#!ipxe\necho hello 127.0.0.1\n');
    expect(sha((await tftpGet(s.port, 'f513.bin')).data)).toBe(sha(files['f513.bin']));
  });

  it('a source that throws gets an ERROR 0 answer, not silence', async () => {
    const s = await startTftpServer({
      source: functionSource(() => {
        throw new Error('template bug at /srv/secret/path');
      }),
      address: '127.0.0.1',
      port: 0,
    });
    servers.push(s);
    const r = await tftpGet(s.port, 'x');
    expect(r.error).toEqual({ code: 0, message: 'Internal error' });
  });

  it("caps blksize with the cap the source opened the file with (blksizeCap), not above the server's maximum", async () => {
    const inner = fileRootSource(root);
    const capped = (cap: number, only?: string): TftpSource => ({
      async open(p, client) {
        const r = await inner.open(p, client);
        return r.status === 'ok' && (only === undefined || p === only) ? { ...r, blksizeCap: cap } : r;
      },
    });
    const { s } = await server({ source: capped(1024, 'n1468.bin') });
    const r = await tftpGet(s.port, 'n1468.bin', { options: [['blksize', '1468']] });
    expect(r.oack).toEqual([['blksize', '1024']]);
    expect(sha(r.data)).toBe(sha(files['n1468.bin']));
    // Another file of the same source, same client: the cap was this file's, the server's maximum applies.
    const other = await tftpGet(s.port, 'f513.bin', { options: [['blksize', '1468']] });
    expect(other.oack).toEqual([['blksize', '1468']]);
    // A cap above the server's maximum does not raise it.
    const { s: s2 } = await server({ maxBlksize: 800, source: capped(4000) });
    const r2 = await tftpGet(s2.port, 'n1468.bin', { options: [['blksize', '1468']] });
    expect(r2.oack).toEqual([['blksize', '800']]);
    expect(sha(r2.data)).toBe(sha(files['n1468.bin']));
  });

  it('logs one info line per transfer with client, file, options, bytes, duration, result', async () => {
    const { logger, lines } = captureLogger();
    const { s } = await server({ logger });
    await tftpGet(s.port, 'f513.bin', { options: [['blksize', '1468']] });
    await new Promise((r) => setTimeout(r, 20));
    const done = lines.filter((l) => l.msg === 'tftp transfer');
    expect(done).toHaveLength(1);
    expect(done[0]).toMatchObject({
      level: 30,
      op: 'read',
      file: 'f513.bin',
      options: { blksize: 1468, windowsize: 1 },
      bytes: 513,
      result: 'ok',
    });
    expect(done[0].client).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(typeof done[0].durationMs).toBe('number');
    expect(s.stats.bytesSent).toBe(513);
  });
});

describe('loss, duplicates and timeouts', () => {
  it('recovers from lost DATA in lock-step (server retransmits)', async () => {
    const { s } = await server();
    const lost = new Set<number>();
    const r = await tftpGet(s.port, 'one-mib.bin', {
      options: [['blksize', '1468']],
      retransmitMs: 60_000, // the client never retransmits: only the server timer can recover
      dropData: (b) => {
        if (b % 50 === 7 && !lost.has(b)) {
          lost.add(b);
          return true;
        }
        return false;
      },
    });
    expect(sha(r.data)).toBe(sha(files['one-mib.bin']));
    expect(s.stats.retransmits).toBeGreaterThanOrEqual(lost.size);
  });

  it('recovers from lost ACKs', async () => {
    const { s } = await server();
    const r = await tftpGet(s.port, 'one-mib.bin', { retransmitMs: 60_000, dropAck: (_b, n) => n % 40 === 3 });
    expect(sha(r.data)).toBe(sha(files['one-mib.bin']));
    expect(s.stats.retransmits).toBeGreaterThan(0);
  });

  it("duplicate ACKs never cause a resend (Sorcerer's Apprentice)", async () => {
    // A long timeout so that any duplicate DATA can only come from reacting to the duplicate ACKs.
    const { s } = await server({ timeoutMs: 5000, minTimeoutMs: 5000 });
    const r = await tftpGet(s.port, 'one-mib.bin', { options: [['blksize', '1468']], ackCopies: 3 });
    expect(sha(r.data)).toBe(sha(files['one-mib.bin']));
    expect(r.duplicates).toBe(0);
    expect(r.dataPackets).toBe(Math.floor((1 << 20) / 1468) + 1);
    expect(s.stats.retransmits).toBe(0);
  });

  it('windowsize with lost blocks: go back to the last acknowledged block', async () => {
    const { s } = await server();
    const seen = new Set<number>();
    const r = await tftpGet(s.port, 'one-mib.bin', {
      options: [
        ['blksize', '1468'],
        ['windowsize', '16'],
      ],
      retransmitMs: 60_000,
      dropData: (b) => {
        if (b % 37 === 5 && !seen.has(b)) {
          seen.add(b);
          return true;
        }
        return false;
      },
    });
    expect(sha(r.data)).toBe(sha(files['one-mib.bin']));
  });

  it('gives up on a silent client within the bounded time and releases everything', async () => {
    const { s, src } = await server({ timeoutMs: 100, maxRetries: 3 });
    const started = Date.now();
    const replies = await exchange(s.port, [encodeRequest('RRQ', 'one-mib.bin', 'octet')], 600);
    // First DATA, then retransmissions with backoff, then nothing.
    const blocks = replies.map((b) => decodePacket(b)).filter((d) => d.ok && d.packet.op === 'DATA');
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    expect(blocks.length).toBeLessThanOrEqual(6);
    for (let i = 0; i < 50 && s.activeTransfers() > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(s.activeTransfers()).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(s.stats.transfersFailed).toBe(1);
    expect(src.openFiles()).toBe(0);
  });

  it('a client ERROR cancels the transfer at once', async () => {
    const { s, src } = await server();
    const r = await tftpGet(s.port, 'one-mib.bin', { dropData: (_b, n) => n >= 3, limitMs: 300 });
    expect(r.timedOut).toBe(true);
    await exchange(s.port, [], 10);
    // The client stops: its socket closes, the kernel answers with ICMP unreachable, the transfer ends.
    for (let i = 0; i < 100 && s.activeTransfers() > 0; i++) await new Promise((res) => setTimeout(res, 20));
    expect(s.activeTransfers()).toBe(0);
    expect(src.openFiles()).toBe(0);
  });

  it('a retransmitted RRQ does not start a second transfer', async () => {
    const { s } = await server({ timeoutMs: 2000 });
    const rrq = encodeRequest('RRQ', 'f513.bin', 'octet');
    const replies = await exchange(s.port, [rrq, rrq, rrq], 100);
    expect(replies).toHaveLength(1);
    expect(s.stats.duplicateRequests).toBe(2);
    expect(s.stats.transfersStarted).toBe(1);
  });

  it('retransmission timers keep firing while other transfers saturate the loop', async () => {
    const { s } = await server();
    const busy = Array.from({ length: 6 }, () =>
      tftpGet(s.port, 'one-mib.bin', {
        options: [
          ['blksize', '1468'],
          ['windowsize', '64'],
        ],
      }),
    );
    const t0 = Date.now();
    let dropped = 0;
    const lossy = tftpGet(s.port, 'one-mib.bin', {
      options: [['blksize', '1468']],
      retransmitMs: 60_000,
      dropData: (_b, n) => n % 25 === 1 && ++dropped > 0,
    });
    const [r] = await Promise.all([lossy, ...busy]);
    expect(sha(r.data)).toBe(sha(files['one-mib.bin']));
    expect(dropped).toBeGreaterThan(20);
    // ~29 losses each recovered by a server timeout; a starved timer would take far longer.
    expect(Date.now() - t0).toBeLessThan(15_000);
  });
});

describe('option negotiation on the wire', () => {
  it('ERROR 8 after OACK is a size probe, not a failure; the real request follows', async () => {
    const { logger, lines } = captureLogger();
    const { s } = await server({ logger });
    const probe = await tftpGet(s.port, 'one-mib.bin', {
      options: [
        ['tsize', '0'],
        ['blksize', '1468'],
        ['windowsize', '4'],
      ],
      abortAfterOack: true,
    });
    expect(probe.oack).toEqual([
      ['tsize', String(1 << 20)],
      ['blksize', '1468'],
      ['windowsize', '4'],
    ]);
    const r = await tftpGet(s.port, 'one-mib.bin', {
      options: [
        ['blksize', '1468'],
        ['windowsize', '4'],
      ],
    });
    expect(sha(r.data)).toBe(sha(files['one-mib.bin']));
    await settle(s);
    expect(s.stats).toMatchObject({ sizeProbes: 1, transfersFailed: 0, transfersCompleted: 1 });
    const probeLines = lines.filter((l) => l.result === 'probe');
    expect(probeLines).toHaveLength(1);
    expect(probeLines[0].level).toBe(20);
  });

  it('a different request from the same port replaces a transfer waiting on its OACK (probe racing ERROR 8)', async () => {
    const { s } = await server();
    const sock = (await import('node:dgram')).createSocket('udp4');
    const got: Array<{ m: Buffer; port: number }> = [];
    sock.on('message', (m, ri) => got.push({ m, port: ri.port }));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const wait = async (n: number) => {
      for (let i = 0; i < 100 && got.length < n; i++) await new Promise((r) => setTimeout(r, 5));
    };
    sock.send(
      encodeRequest('RRQ', 'f513.bin', 'octet', [
        ['tsize', '0'],
        ['blksize', '1468'],
      ]),
      s.port,
      '127.0.0.1',
    );
    await wait(1);
    sock.send(encodeRequest('RRQ', 'f513.bin', 'octet', [['blksize', '1468']]), s.port, '127.0.0.1');
    await wait(2);
    expect(got.map((g) => decodePacket(g.m))).toMatchObject([
      {
        ok: true,
        packet: {
          op: 'OACK',
          options: [
            ['tsize', '513'],
            ['blksize', '1468'],
          ],
        },
      },
      { ok: true, packet: { op: 'OACK', options: [['blksize', '1468']] } },
    ]);
    expect(got[1].port).not.toBe(got[0].port);
    sock.send(encodeAck(0), got[1].port, '127.0.0.1');
    await wait(3);
    expect(decodePacket(got[2].m)).toMatchObject({ ok: true, packet: { op: 'DATA', block: 1 } });
    sock.send(encodeAck(1), got[1].port, '127.0.0.1');
    await settle(s);
    sock.close();
    expect(s.stats).toMatchObject({ sizeProbes: 1, transfersStarted: 2, transfersCompleted: 1, transfersFailed: 0 });
  });

  it('an OACK that is never acknowledged is retransmitted, then the transfer times out', async () => {
    const { s } = await server({ timeoutMs: 50, maxRetries: 3 });
    const replies = await exchange(s.port, [encodeRequest('RRQ', 'f513.bin', 'octet', [['blksize', '1024']])], 400);
    expect(replies.length).toBeGreaterThanOrEqual(2);
    for (const r of replies) expect(decodePacket(r)).toMatchObject({ ok: true, packet: { op: 'OACK' } });
  });
});

describe('refusals never leak paths', () => {
  const attempts = ['../../etc/passwd', '/etc/passwd', '..\\..\\x', 'link-out', 'sub/../../secret', 'sub/./text.cfg'];
  for (const name of attempts) {
    it(`refuses ${JSON.stringify(name)} with ERROR 2`, async () => {
      const { logger, lines } = captureLogger();
      const { s } = await server({ logger });
      const r = await tftpGet(s.port, name);
      expect(r.error?.code).toBe(2);
      expect(r.error?.message).not.toMatch(/\//);
      expect(r.error?.message).not.toContain(dir);
      await new Promise((res) => setTimeout(res, 20));
      expect(lines.some((l) => l.msg === 'tftp request refused' && l.code === 2)).toBe(true);
    });
  }

  it('missing file: ERROR 1 without the root in the message', async () => {
    const { s } = await server();
    const r = await tftpGet(s.port, 'does-not-exist');
    expect(r.error).toEqual({ code: 1, message: 'File not found' });
  });

  it('a directory is refused', async () => {
    const { s } = await server();
    expect((await tftpGet(s.port, 'sub')).error?.code).toBe(2);
  });

  it('mail mode is refused with ERROR 4', async () => {
    const { s } = await server();
    expect((await tftpGet(s.port, 'f511.bin', { mode: 'mail' })).error?.code).toBe(4);
  });
});

describe('WRQ', () => {
  async function put(port: number, name: string, data: Buffer, blksize = 512) {
    const sock = (await import('node:dgram')).createSocket('udp4');
    const replies: Buffer[] = [];
    let tid = 0;
    const next = () =>
      new Promise<Buffer>((res, rej) => {
        const t = setTimeout(() => rej(new Error('no reply')), 2000);
        sock.once('message', (m, ri) => {
          clearTimeout(t);
          tid = ri.port;
          replies.push(m);
          res(m);
        });
      });
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const opts: Array<[string, string]> = blksize === 512 ? [] : [['blksize', String(blksize)]];
    sock.send(encodeRequest('WRQ', name, 'octet', opts), port, '127.0.0.1');
    let reply = decodePacket(await next());
    try {
      if (!reply.ok || reply.packet.op === 'ERROR') return reply;
      for (let b = 1; ; b++) {
        const chunk = data.subarray((b - 1) * blksize, b * blksize);
        const pkt = Buffer.concat([Buffer.from([0, 3, (b >> 8) & 0xff, b & 0xff]), chunk]);
        sock.send(pkt, tid, '127.0.0.1');
        reply = decodePacket(await next());
        if (!reply.ok || reply.packet.op !== 'ACK' || reply.packet.block !== (b & 0xffff)) return reply;
        if (chunk.length < blksize) return reply;
      }
    } finally {
      sock.close();
    }
  }

  it('is refused with ERROR 2 when uploads are disabled', async () => {
    const { s } = await server();
    const r = await put(s.port, 'x.bin', Buffer.from('x'));
    expect(r).toMatchObject({ ok: true, packet: { op: 'ERROR', code: 2 } });
  });

  it('stores an upload inside uploadDir, replaces an existing file whole, refuses traversal', async () => {
    const uploadDir = path.join(dir, 'uploads');
    const { s } = await server({ uploadDir });
    const data = randomBytes(5000);
    const r = await put(s.port, 'new.bin', data, 1024);
    expect(r).toMatchObject({ ok: true, packet: { op: 'ACK', block: 5 } });
    await new Promise((res) => setTimeout(res, 20));
    expect(sha(await readFile(path.join(uploadDir, 'new.bin')))).toBe(sha(data));
    // A second upload to the same name replaces it (atftpd and tftp-hpa do; atftp's conformance script relies on it).
    const again = randomBytes(700);
    expect(await put(s.port, 'new.bin', again)).toMatchObject({ ok: true, packet: { op: 'ACK', block: 2 } });
    await new Promise((res) => setTimeout(res, 20));
    expect(sha(await readFile(path.join(uploadDir, 'new.bin')))).toBe(sha(again));
    expect(await put(s.port, '../escape.bin', data)).toMatchObject({ ok: true, packet: { op: 'ERROR', code: 2 } });
    expect(s.stats.transfersCompleted).toBe(2);
    // No temporary files are left beside the uploads.
    expect((await readdir(uploadDir)).sort()).toEqual(['new.bin']);
  });
});

describe('resources', () => {
  function handles() {
    const info = process.getActiveResourcesInfo();
    return {
      udp: info.filter((r) => r === 'UDPWrap').length,
      timers: info.filter((r) => r === 'Timeout').length,
      files: info.filter((r) => r === 'FileHandle').length,
    };
  }

  it('leaves no sockets, timers or file handles after transfers and after close', async () => {
    await new Promise((r) => setTimeout(r, 50));
    const before = handles();
    const { s, src } = await server();
    await Promise.all([
      tftpGet(s.port, 'one-mib.bin', { options: [['windowsize', '8']] }),
      tftpGet(s.port, 'one-mib.bin'),
      tftpGet(s.port, 'f513.bin'),
      tftpGet(s.port, 'missing'),
      tftpGet(s.port, 'one-mib.bin', { options: [['tsize', '0']], abortAfterOack: true }),
    ]);
    await settle(s);
    await new Promise((r) => setTimeout(r, 20));
    expect(s.activeTransfers()).toBe(0);
    expect(src.openFiles()).toBe(0);
    expect(handles().udp).toBe(before.udp + 1); // the listening socket only
    // Vitest keeps timers of its own: ours must not add any.
    expect(handles().timers).toBeLessThanOrEqual(before.timers);
    // A transfer cut off by close().
    const pendingGet = tftpGet(s.port, 'one-mib.bin', { dropData: (_b, n) => n > 2, limitMs: 1000 });
    await new Promise((r) => setTimeout(r, 100));
    expect(s.activeTransfers(), JSON.stringify(s.stats)).toBe(1);
    await s.close();
    servers.splice(servers.indexOf(s), 1);
    await pendingGet;
    await new Promise((r) => setTimeout(r, 50));
    expect(src.openFiles()).toBe(0);
    const after = handles();
    expect(after.udp).toBe(before.udp);
    expect(after.files).toBe(before.files);
    expect(after.timers).toBeLessThanOrEqual(before.timers);
  });

  it('a port already in use is reported with what to do, and nothing is left open', async () => {
    const { s } = await server();
    const before = process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length;
    const attempt = startTftpServer({ source: fileRootSource(root), address: '127.0.0.1', port: s.port });
    await expect(attempt).rejects.toThrow(/EADDRINUSE.*another TFTP server/);
    await expect(attempt).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await new Promise((r) => setTimeout(r, 20));
    expect(process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length).toBe(before);
  });

  it('shares one file handle between concurrent readers of the same file', async () => {
    const src = fileRootSource(root);
    const a = await src.open('one-mib.bin', { address: '127.0.0.1', port: 1 });
    const b = await src.open('one-mib.bin', { address: '127.0.0.1', port: 2 });
    expect(a.status).toBe('ok');
    expect(src.openFiles()).toBe(1);
    if (a.status === 'ok' && b.status === 'ok') {
      const [x, y] = await Promise.all([a.read(1000, 300_000), b.read(1000, 300_000)]);
      expect(x).toEqual(files['one-mib.bin'].subarray(1000, 301_000));
      expect(y).toEqual(x);
      a.close();
      expect(src.openFiles()).toBe(1);
      b.close();
    }
    expect(src.openFiles()).toBe(0);
  });

  it('malformed packets to the listening port are counted and get no reply', async () => {
    const { s } = await server();
    const junk = [Buffer.alloc(0), Buffer.from([0, 9]), Buffer.from([0, 1, 0x41]), encodeAck(1)];
    const replies = await exchange(s.port, junk, 100);
    expect(replies).toHaveLength(0);
    expect(s.stats.malformed).toBe(3);
    expect(s.stats.unexpected).toBe(1);
  });
});
