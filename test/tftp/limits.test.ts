/**
 * Resource bounds of the TFTP server (issue 11, defect 4; issue 13, RFC 2349 timeout): transfer caps in total and per
 * client address, the oldest never-answered transfer giving way, a never-answered first packet given up quickly, the
 * client's timeout capped and then honoured exactly, transfer-socket failures (EMFILE) survived, and a bounded RRQ
 * flood that holds at most the cap of descriptors and releases them all while real clients are served.
 */
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { rateLimitedLog } from '../../src/log-limit.js';
import { decodePacket, encodeAck, encodeRequest, negotiate, type OptionList } from '../../src/tftp/codec.js';
import { Admission } from '../../src/tftp/limits.js';
import { startTftpServer, type TftpServer, type TftpServerOptions } from '../../src/tftp/server.js';
import { fileRootSource, SourceBusy } from '../../src/tftp/source.js';
import { openTransferSocket } from '../../src/tftp/transport.js';
import { tftpGet } from './client.js';

let root: string;
let big: Buffer;
const servers: TftpServer[] = [];
const peers: Peer[] = [];
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function server(extra: Partial<TftpServerOptions> = {}) {
  const s = await startTftpServer({ source: fileRootSource(root), address: '127.0.0.1', port: 0, ...extra });
  servers.push(s);
  return s;
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(10);
  return cond();
}

function captureLogger() {
  const lines: any[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, dest), lines };
}

/** A raw client: sends what it is told, records what comes back (when, from which port), never answers by itself. */
class Peer {
  readonly got: Array<{ at: number; port: number; op: string; block?: number; options?: OptionList; len: number }> = [];
  private constructor(readonly sock: dgram.Socket) {}
  static async open(address = '127.0.0.1'): Promise<Peer> {
    const sock = dgram.createSocket('udp4');
    const p = new Peer(sock);
    sock.on('message', (m, ri) => {
      const d = decodePacket(m);
      const packet = d.ok ? d.packet : undefined;
      p.got.push({
        at: Date.now(),
        port: ri.port,
        op: packet?.op ?? 'junk',
        block: packet && 'block' in packet ? packet.block : undefined,
        options: packet?.op === 'OACK' ? packet.options : undefined,
        len: m.length,
      });
    });
    await new Promise<void>((r) => sock.bind(0, address, () => r()));
    peers.push(p);
    return p;
  }
  send(buf: Buffer, port: number) {
    this.sock.send(buf, port, '127.0.0.1');
  }
  rrq(port: number, options: OptionList = [], file = 'big.bin') {
    this.send(encodeRequest('RRQ', file, 'octet', options), port);
  }
  close() {
    try {
      this.sock.close();
    } catch {}
  }
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'plinth-tftp-limits-'));
  big = randomBytes(256 * 1024);
  await writeFile(path.join(root, 'big.bin'), big);
});

afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('admission policy', () => {
  it('caps per client and in total; the oldest unanswered transfer gives way, an answered one never does', () => {
    const a = new Admission<string>({ maxTotal: 3, maxPerClient: 2 });
    expect(a.admit('A')).toEqual({ ok: true });
    a.acquire('A');
    a.awaiting('a1', 'A');
    a.acquire('A');
    a.awaiting('a2', 'A');
    // Per client: A is full; its oldest unanswered transfer is the one to drop.
    expect(a.admit('A')).toEqual({ ok: true, evict: 'a1' });
    a.answered('a1');
    expect(a.admit('A')).toEqual({ ok: true, evict: 'a2' });
    a.answered('a2');
    expect(a.admit('A')).toEqual({ ok: false, reason: 'client' });
    // In total: B fills the last slot; C finds no unanswered transfer to displace.
    expect(a.admit('B')).toEqual({ ok: true });
    a.acquire('B');
    a.awaiting('b1', 'B');
    expect(a.admit('C')).toEqual({ ok: true, evict: 'b1' });
    a.answered('b1');
    expect(a.admit('C')).toEqual({ ok: false, reason: 'total' });
    a.release('A');
    expect(a.inFlightFrom('A')).toBe(1);
    expect(a.admit('C')).toEqual({ ok: true });
    // Releasing more than was taken never goes negative.
    a.release('Z');
    expect(a.inFlight).toBe(2);
  });

  it('a rate-limited log writes one line per interval and counts what it left out', async () => {
    const { logger, lines } = captureLogger();
    const lim = rateLimitedLog(logger, 100);
    for (let i = 0; i < 50; i++) lim('warn', 'k', { i }, 'dropped');
    lim('warn', 'other', {}, 'other reason');
    expect(lines.map((l) => l.msg)).toEqual(['dropped', 'other reason']);
    await sleep(120);
    lim('warn', 'k', { i: 50 }, 'dropped');
    expect(lines.at(-1)).toMatchObject({ msg: 'dropped', suppressed: 49 });
  });
});

describe('RFC 2349 timeout', () => {
  it('a timeout above the cap is left out of the OACK; 1..cap is echoed; outside 1..255 is still refused', () => {
    const lim = { maxBlksize: 1468, maxWindowsize: 64, maxTimeout: 10 };
    const hi = negotiate(
      [
        ['timeout', '255'],
        ['blksize', '1024'],
      ],
      lim,
    );
    expect(hi).toMatchObject({ timeoutDeclined: 255, oack: [['blksize', '1024']] });
    expect(hi.timeout).toBeUndefined();
    expect(negotiate([['timeout', '10']], lim)).toMatchObject({ timeout: 10, oack: [['timeout', '10']] });
    expect(negotiate([['timeout', '256']], lim).refused).toBeDefined();
    expect(negotiate([['timeout', '0']], lim).refused).toBeDefined();
  });

  it('on the wire: timeout 255 is not acknowledged and counted; timeout 10 is', async () => {
    const s = await server();
    const p = await Peer.open();
    p.rrq(s.port, [
      ['timeout', '255'],
      ['blksize', '1024'],
    ]);
    const q = await Peer.open();
    q.rrq(s.port, [['timeout', '10']]);
    expect(await until(() => p.got.length >= 1 && q.got.length >= 1, 2000)).toBe(true);
    expect(p.got[0]).toMatchObject({ op: 'OACK', options: [['blksize', '1024']] });
    expect(q.got[0]).toMatchObject({ op: 'OACK', options: [['timeout', '10']] });
    expect(s.stats.timeoutsDeclined).toBe(1);
  });

  it('a client that asked timeout 1 gets its DATA resent every second, not on an adaptive 0.2/0.4/0.8 s', async () => {
    const s = await server();
    const p = await Peer.open();
    p.rrq(s.port, [
      ['timeout', '1'],
      ['blksize', '512'],
    ]);
    expect(await until(() => p.got.length >= 1, 2000)).toBe(true);
    expect(p.got[0].op).toBe('OACK');
    // A quick ACK 0: an adaptive estimate would now drop toward its 200 ms floor.
    p.send(encodeAck(0), p.got[0].port);
    expect(await until(() => p.got.filter((g) => g.op === 'DATA').length >= 3, 4000)).toBe(true);
    const data = p.got.filter((g) => g.op === 'DATA' && g.block === 1);
    expect(data.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < data.length; i++) expect(data[i].at - data[i - 1].at).toBeGreaterThanOrEqual(900);
  });
});

describe('a first packet nobody answers', () => {
  it('a request asking timeout 255 that never answers gets 3 packets and holds its socket about 3 s', async () => {
    const s = await server();
    const p = await Peer.open();
    const t0 = Date.now();
    p.rrq(s.port, [
      ['timeout', '255'],
      ['blksize', '1468'],
    ]);
    expect(await until(() => s.stats.openSockets === 1, 1000)).toBe(true);
    expect(await until(() => s.stats.openSockets === 0, 4500)).toBe(true);
    const held = Date.now() - t0;
    expect(held).toBeLessThan(4500);
    expect(held).toBeGreaterThanOrEqual(2500);
    await sleep(300);
    expect(p.got.map((g) => g.op)).toEqual(['OACK', 'OACK', 'OACK']);
    expect(s.stats).toMatchObject({ transfersUnanswered: 1, transfersFailed: 1, activeTransfers: 0 });
  });

  it('unanswered retries are configurable, and an upload (WRQ) nobody continues is dropped the same way', async () => {
    const up = await mkdtemp(path.join(tmpdir(), 'plinth-tftp-up-'));
    try {
      const s = await server({ timeoutMs: 100, unansweredRetries: 0, uploadDir: up });
      const p = await Peer.open();
      const w = await Peer.open();
      p.rrq(s.port, [['blksize', '1468']]);
      w.send(encodeRequest('WRQ', 'x.bin', 'octet'), s.port);
      expect(await until(() => s.stats.transfersUnanswered === 2, 2000)).toBe(true);
      await sleep(150);
      expect(p.got.map((g) => g.op)).toEqual(['OACK']);
      expect(w.got.map((g) => g.op)).toEqual(['ACK']);
      expect(readdirSync(up)).toEqual([]);
    } finally {
      await rm(up, { recursive: true, force: true });
    }
  });

  it('a client that answered keeps the full retry budget', async () => {
    const s = await server({ timeoutMs: 100, minTimeoutMs: 100, maxRetries: 5 });
    const p = await Peer.open();
    p.rrq(s.port, [['blksize', '512']]);
    expect(await until(() => p.got.length >= 1, 1000)).toBe(true);
    p.send(encodeAck(0), p.got[0].port);
    expect(await until(() => s.activeTransfers() === 0, 3000)).toBe(true);
    // DATA 1 plus a retransmission every 100 ms for 500 ms: well past the 3 packets of an unanswered transfer.
    expect(p.got.filter((g) => g.op === 'DATA').length).toBeGreaterThanOrEqual(4);
    expect(s.stats).toMatchObject({ transfersUnanswered: 0, transfersFailed: 1 });
  });
});

describe('transfer caps', () => {
  for (const nativeSockets of [true, false]) {
    it(`per client: the oldest unanswered transfer of that address gives way; other addresses are untouched (${nativeSockets ? 'native' : 'dgram'} sockets)`, async () => {
      const s = await server({ maxTransfersPerClient: 2, timeoutMs: 2000, nativeSockets });
      const other = await Peer.open('127.0.0.2');
      other.rrq(s.port, [['blksize', '1024']]);
      const ps = [await Peer.open(), await Peer.open(), await Peer.open()];
      for (const p of ps) {
        p.rrq(s.port, [['blksize', '1024']]);
        expect(await until(() => p.got.length >= 1, 1000)).toBe(true);
      }
      expect(await until(() => other.got.length >= 1, 1000)).toBe(true);
      expect(s.stats).toMatchObject({ transfersEvicted: 1, activeTransfers: 3, openSockets: 3 });
      // The first one's socket is gone: its ACK 0 goes nowhere; the third one is served.
      ps[2].send(encodeAck(0), ps[2].got[0].port);
      expect(await until(() => ps[2].got.some((g) => g.op === 'DATA'), 1000)).toBe(true);
      ps[0].send(encodeAck(0), ps[0].got[0].port);
      await sleep(100);
      expect(ps[0].got.some((g) => g.op === 'DATA')).toBe(false);
    });
  }

  it('when every slot is held by a client that answers, a new request is dropped without reply, and counted', async () => {
    const { logger, lines } = captureLogger();
    const s = await server({ maxTransfersPerClient: 2, timeoutMs: 2000, logger });
    const ps = [await Peer.open(), await Peer.open()];
    for (const p of ps) {
      p.rrq(s.port, [['blksize', '1024']]);
      expect(await until(() => p.got.length >= 1, 1000)).toBe(true);
      p.send(encodeAck(0), p.got[0].port);
    }
    expect(await until(() => ps.every((p) => p.got.some((g) => g.op === 'DATA')), 1000)).toBe(true);
    const late = await Peer.open();
    for (let i = 0; i < 5; i++) late.rrq(s.port, [['blksize', '1024']], `big.bin${'?'.repeat(i)}`);
    await sleep(300);
    expect(late.got).toEqual([]);
    expect(s.stats).toMatchObject({ requestsDropped: 5, transfersEvicted: 0, activeTransfers: 2 });
    expect(lines.filter((l) => /dropped/.test(l.msg))).toHaveLength(1);
    // Another address is still served in full.
    const r = await tftpGet(s.port, 'big.bin', { from: '127.0.0.3', options: [['blksize', '1468']] });
    expect(sha(r.data)).toBe(sha(big));
  });

  it('in total: the globally oldest unanswered transfer gives way', async () => {
    const s = await server({ maxTransfers: 2, timeoutMs: 2000 });
    const a = await Peer.open('127.0.0.2');
    const b = await Peer.open('127.0.0.3');
    a.rrq(s.port, [['blksize', '1024']]);
    await until(() => a.got.length >= 1, 1000);
    b.rrq(s.port, [['blksize', '1024']]);
    await until(() => b.got.length >= 1, 1000);
    const r = await tftpGet(s.port, 'big.bin', { options: [['blksize', '1468']] });
    expect(sha(r.data)).toBe(sha(big));
    expect(s.stats.transfersEvicted).toBe(1);
    // a's transfer was the one dropped: its ACK 0 reaches a closed port.
    a.send(encodeAck(0), a.got[0].port);
    b.send(encodeAck(0), b.got[0].port);
    expect(await until(() => b.got.some((g) => g.op === 'DATA'), 1000)).toBe(true);
    await sleep(100);
    expect(a.got.some((g) => g.op === 'DATA')).toBe(false);
  });
});

describe('descriptor exhaustion', () => {
  it('EMFILE opening a transfer socket: logged once per interval, nothing thrown, slots released, then served', async () => {
    const { logger, lines } = captureLogger();
    let failing = true;
    const s = await server({
      logger,
      maxTransfers: 4,
      openSocket: async (...args) => {
        if (failing) throw Object.assign(new Error('EMFILE: too many open files, socket'), { code: 'EMFILE' });
        return openTransferSocket(...args);
      },
    });
    const ps = await Promise.all(Array.from({ length: 20 }, () => Peer.open()));
    for (const [i, p] of ps.entries()) {
      p.rrq(s.port, [['blksize', '1024']]);
      expect(await until(() => s.stats.openErrors === i + 1, 2000)).toBe(true);
    }
    expect(ps.every((p) => p.got.length === 0)).toBe(true);
    expect(s.stats).toMatchObject({ activeTransfers: 0, openSockets: 0, requestsDropped: 0 });
    const warn = lines.filter((l) => /transfer socket/.test(l.msg));
    expect(warn).toHaveLength(1);
    expect(warn[0].msg).toMatch(/ulimit -n|LimitNOFILE/);
    // Twenty failures with a cap of four: had a slot leaked, this request would be dropped.
    failing = false;
    const r = await tftpGet(s.port, 'big.bin', { options: [['blksize', '1468']] });
    expect(sha(r.data)).toBe(sha(big));
  });
});

describe('descriptor exhaustion in the source', () => {
  it('a source out of descriptors leaves the request unanswered (no ERROR for firmware to abort on)', async () => {
    const { logger, lines } = captureLogger();
    let failing = true;
    const files = fileRootSource(root);
    const s = await startTftpServer({
      address: '127.0.0.1',
      port: 0,
      logger,
      maxTransfers: 2,
      source: {
        open: async (name, client) => {
          if (failing) throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
          return files.open(name, client);
        },
      },
    });
    servers.push(s);
    const ps = await Promise.all(Array.from({ length: 5 }, () => Peer.open()));
    for (const [i, p] of ps.entries()) {
      p.rrq(s.port);
      expect(await until(() => s.stats.openErrors === i + 1, 2000)).toBe(true);
    }
    await sleep(100);
    expect(ps.every((p) => p.got.length === 0)).toBe(true);
    expect(s.stats).toMatchObject({ requestsRefused: 0, activeTransfers: 0 });
    expect(lines.filter((l) => /out of file descriptors/.test(l.msg))).toHaveLength(1);
    failing = false;
    const r = await tftpGet(s.port, 'big.bin');
    expect(sha(r.data)).toBe(sha(big));
  });
});

describe('a source that cannot answer now', () => {
  it('SourceBusy (a full render queue): no reply at all, counted, then served when it can', async () => {
    let busy = true;
    const files = fileRootSource(root);
    const s = await startTftpServer({
      address: '127.0.0.1',
      port: 0,
      logger: captureLogger().logger,
      source: {
        open: async (name, client) => {
          if (busy) throw new SourceBusy('render queue full');
          return files.open(name, client);
        },
      },
    });
    servers.push(s);
    const p = await Peer.open();
    p.rrq(s.port);
    expect(await until(() => s.stats.openErrors === 1, 2000)).toBe(true);
    await sleep(100);
    // Neither an ERROR nor an OACK: PXE firmware repeats an RRQ after silence but ends the boot on an ERROR.
    expect(p.got).toHaveLength(0);
    busy = false;
    const r = await tftpGet(s.port, 'big.bin');
    expect(sha(r.data)).toBe(sha(big));
  });
});

describe('a bounded RRQ flood', () => {
  it('3,000 never-answered RRQs with timeout 255: at most the cap held, all released within the give-up time, real clients served during and after', async () => {
    const fds = () => readdirSync('/proc/self/fd').length;
    const s = await server();
    const n = 3000;
    const flood: Peer[] = [];
    // 250 ports on each of 12 addresses: every address under the per-client cap (256), the total over its 1024.
    for (let i = 0; i < n; i++) flood.push(await Peer.open(`127.0.0.${10 + Math.floor(i / 250)}`));
    const base = fds();
    let peakFds = 0;
    let peakSockets = 0;
    const sample = setInterval(() => {
      peakFds = Math.max(peakFds, fds() - base);
      peakSockets = Math.max(peakSockets, s.stats.openSockets);
    }, 20);
    try {
      const t0 = Date.now();
      const sent = (async () => {
        for (let i = 0; i < n; i++) {
          flood[i].rrq(s.port, [
            ['timeout', '255'],
            ['blksize', '1468'],
          ]);
          // Paced so the listening socket's receive queue keeps up (what arrives, not how fast, is under test).
          if (i % 50 === 49) await sleep(5);
        }
      })();
      await sleep(200);
      const during = await tftpGet(s.port, 'big.bin', { options: [['blksize', '1468']], limitMs: 10_000 });
      await sent;
      const floodedFor = Date.now() - t0;
      expect(sha(during.data)).toBe(sha(big));
      expect(s.stats.transfersStarted).toBeGreaterThan(2000);
      // Every one gave up or gave way within the 3 s unanswered budget after the last request went out.
      expect(await until(() => s.stats.openSockets === 0 && s.activeTransfers() === 0, floodedFor + 4000)).toBe(true);
      // The descriptors themselves, not only our count of them (the test client's own socket may close a tick late).
      expect(await until(() => fds() - base <= 0, 1000)).toBe(true);
      expect(peakSockets).toBeLessThanOrEqual(1024);
      expect(peakSockets).toBeGreaterThan(900);
      expect(peakFds).toBeLessThanOrEqual(1024 + 8);
      expect(s.stats.transfersEvicted + s.stats.transfersUnanswered).toBe(s.stats.transfersStarted - 1);
      // Each forged source got at most the first packet and two retransmissions, none of them carrying file data.
      const perSource = flood.map((p) => p.got.length);
      expect(Math.max(...perSource)).toBeLessThanOrEqual(3);
      expect(flood.every((p) => p.got.every((g) => g.op === 'OACK'))).toBe(true);
    } finally {
      clearInterval(sample);
    }
    const after = await tftpGet(s.port, 'big.bin');
    expect(sha(after.data)).toBe(sha(big));
  }, 30_000);
});
