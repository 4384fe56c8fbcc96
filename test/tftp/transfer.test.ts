/**
 * The TFTP transfer state machines without a socket: a recording port stands in for the transfer socket, a number
 * for the clock, and the test plays the client (ACKs, DATA, ERRORs, duplicates) by calling the transfer's handlers.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import {
  decodePacket,
  encodeData,
  encodeError,
  type Limits,
  negotiate,
  type OptionList,
  type TftpPacket,
} from '../../src/tftp/codec.js';
import { packetCache } from '../../src/tftp/layout.js';
import { type ReadEnv, ReadTransfer } from '../../src/tftp/read.js';
import { prepareRead, type RequestEnv } from '../../src/tftp/requests.js';
import { RetransmitTicker } from '../../src/tftp/retransmit.js';
import { bufferFile, bufferSource, type TftpFile } from '../../src/tftp/source.js';
import { newStats, type Result } from '../../src/tftp/stats.js';
import type { Transfer, TransferPort } from '../../src/tftp/transfer.js';
import { type UploadSink, WriteTransfer } from '../../src/tftp/write.js';

const LIMITS: Required<Limits> = { maxBlksize: 1468, maxWindowsize: 64, maxTimeout: 10 };
const client = { address: '192.0.2.7', port: 2000 };

/** Lets pending chunk reads and upload writes settle (they are promises, as with a real file). */
const settle = () => new Promise<void>((r) => setImmediate(r));

type Armed = { ack: number; count: number };

function harness(o: { arm?: boolean } = {}) {
  let clock = 1000;
  const wire: TftpPacket[] = [];
  const armed: Armed[] = [];
  const results: Result[] = [];
  const record = (b: Buffer) => {
    const d = decodePacket(Buffer.from(b));
    if (!d.ok) throw new Error(`the transfer sent garbage: ${d.error}`);
    wire.push(d.packet);
  };
  const port: TransferPort = {
    send: (buf, off = 0, len = buf.length - off) => record(buf.subarray(off, off + len)),
    sendBatch: (buf, off, slot, count, lastLength) => {
      for (let i = 0; i < count; i++) {
        const at = off + i * slot;
        record(buf.subarray(at, at + (i === count - 1 ? lastLength : slot)));
      }
    },
    arm: o.arm
      ? (ack, _slot, _buf, _off, count, _last, _b2, _o2, count2) => armed.push({ ack, count: count + (count2 ?? 0) })
      : undefined,
    disarm: o.arm ? () => armed.push({ ack: -1, count: 0 }) : undefined,
    close: async () => {},
  };
  const stats = newStats({ activeTransfers: () => 0, openSockets: () => 0 });
  const env: ReadEnv = {
    stats,
    log: silentLogger,
    now: () => clock,
    rtoFloor: () => 200,
    maxRetries: 5,
    unansweredRetries: 2,
    answered: () => {},
    finished: (_t, r) => results.push(r),
    packets: packetCache(8 << 20),
    armWindows: true,
  };
  const request = (options: OptionList, size?: number) => ({
    client,
    filename: 'f',
    mode: 'octet',
    neg: negotiate(options, LIMITS, size),
    timeoutMs: 1000,
    slot: { address: client.address, held: true },
  });
  const read = (file: TftpFile, options: OptionList = []) =>
    new ReadTransfer(port, request(options, file.size), env, file);
  /** Takes what was sent since the last call, as short strings. */
  const take = () =>
    wire.splice(0).map((p) => {
      if (p.op === 'DATA') return `DATA ${p.block} ${p.data.length}`;
      if (p.op === 'ACK') return `ACK ${p.block}`;
      if (p.op === 'OACK') return `OACK ${p.options.map(([k, v]) => `${k}=${v}`).join(' ')}`;
      if (p.op === 'ERROR') return `ERROR ${p.code}`;
      return p.op;
    });
  /** The packets sent since the last call. */
  const packets = () => wire.splice(0);
  const ticker = (t: Transfer) => new RetransmitTicker(new Set([t]), () => clock);
  return {
    env,
    stats,
    results,
    armed,
    read,
    request,
    take,
    packets,
    ticker,
    advance: (ms: number) => {
      clock += ms;
    },
    now: () => clock,
    port,
  };
}

describe('read transfer', () => {
  it('lock-step: DATA 1 first, each ACK brings the next block, the short last block ends it', async () => {
    const h = harness();
    const content = randomBytes(1300);
    const t = h.read(bufferFile(content));
    t.start();
    await settle();
    expect(h.take()).toEqual(['DATA 1 512']);
    t.onAck(1, false);
    expect(h.take()).toEqual(['DATA 2 512']);
    t.onAck(2, false);
    expect(h.take()).toEqual(['DATA 3 276']);
    expect(h.results).toEqual([]);
    t.onAck(3, false);
    expect(h.take()).toEqual([]);
    expect(h.results).toEqual(['ok']);
    expect(t.bytes).toBe(1300);
    expect(h.stats.packetsSent).toBe(3);
    expect(h.stats.retransmits).toBe(0);
  });

  it('a file of whole blocks ends with an empty DATA (RFC 1350: a block under 512 bytes ends the transfer)', async () => {
    const h = harness();
    const t = h.read(bufferFile(randomBytes(1024)));
    t.start();
    await settle();
    t.onAck(1, false);
    t.onAck(2, false);
    expect(h.take()).toEqual(['DATA 1 512', 'DATA 2 512', 'DATA 3 0']);
    t.onAck(3, false);
    expect(h.results).toEqual(['ok']);
  });

  it('windowsize 4: OACK alone until ACK 0, then a window; a partial ACK resends from the block after it (RFC 7440)', async () => {
    const h = harness();
    const t = h.read(bufferFile(randomBytes(512 * 10 + 5)), [['windowsize', '4']]);
    t.start();
    await settle();
    expect(h.take()).toEqual(['OACK windowsize=4']);
    t.onAck(0, false);
    await settle();
    expect(h.take()).toEqual(['DATA 1 512', 'DATA 2 512', 'DATA 3 512', 'DATA 4 512']);
    // The client got 1 to 3 only: the window restarts at 4 (block 4 again, then new ones).
    t.onAck(3, false);
    expect(h.take()).toEqual(['DATA 4 512', 'DATA 5 512', 'DATA 6 512', 'DATA 7 512']);
    expect(h.stats.retransmits).toBe(1);
    t.onAck(7, false);
    expect(h.take()).toEqual(['DATA 8 512', 'DATA 9 512', 'DATA 10 512', 'DATA 11 5']);
    t.onAck(11, false);
    expect(h.results).toEqual(['ok']);
  });

  it('a duplicate ACK sends nothing (Sorcerer’s Apprentice, RFC 1123 4.2.3.1); an ACK of an unsent block is ignored', async () => {
    const h = harness();
    const t = h.read(bufferFile(randomBytes(2000)));
    t.start();
    await settle();
    t.onAck(1, false);
    expect(h.take()).toEqual(['DATA 1 512', 'DATA 2 512']);
    t.onAck(1, false);
    t.onAck(1, false);
    t.onAck(9, false);
    expect(h.take()).toEqual([]);
    t.onAck(2, false);
    expect(h.take()).toEqual(['DATA 3 512']);
  });

  it('retransmits on timeout with back-off, and gives up after maxRetries x the timeout without progress', async () => {
    const h = harness();
    const t = h.read(bufferFile(randomBytes(2000)));
    const tick = h.ticker(t);
    t.start();
    await settle();
    h.advance(30);
    t.onAck(1, false);
    expect(h.take()).toEqual(['DATA 1 512', 'DATA 2 512']);
    const progressAt = h.now();
    // Not yet due: nothing.
    h.advance(t.timer.rto - 1);
    tick.checkExpired();
    expect(h.take()).toEqual([]);
    const resentAt: number[] = [];
    for (let i = 0; i < 100 && h.results.length === 0; i++) {
      h.advance(t.timer.deadline - h.now());
      tick.checkExpired();
      const out = h.take();
      if (out.length > 0) {
        expect(out).toEqual(['DATA 2 512']);
        resentAt.push(h.now() - progressAt);
      }
    }
    expect(h.results).toEqual(['timeout']);
    // RTT 30 ms: the adaptive timeout starts at the 200 ms floor, doubles up to the 1 s maximum, and the transfer
    // ends once 5 x 1 s have passed without progress.
    expect(resentAt).toEqual([200, 600, 1400, 2400, 3400, 4400]);
    expect(h.stats.retransmits).toBe(6);
  });

  it('a client that never answers gets its first packet at most 1 + unansweredRetries times', async () => {
    const h = harness();
    const t = h.read(bufferFile(randomBytes(100)));
    const tick = h.ticker(t);
    t.start();
    await settle();
    for (let i = 0; i < 10 && h.results.length === 0; i++) {
      h.advance(t.timer.rto);
      tick.checkExpired();
    }
    expect(h.take()).toEqual(['DATA 1 100', 'DATA 1 100', 'DATA 1 100']);
    expect(h.results).toEqual(['unanswered']);
  });

  it('block numbers roll over past 65535 to 0, and the wrapped ACKs count as progress', async () => {
    const h = harness();
    const content = randomBytes(8 * 65540 + 3);
    const t = h.read(bufferFile(content), [
      ['blksize', '8'],
      ['windowsize', '16'],
    ]);
    t.start();
    await settle();
    expect(h.take()).toEqual(['OACK blksize=8 windowsize=16']);
    t.onAck(0, false);
    const got: Buffer[] = [];
    const numbers: number[] = [];
    for (let i = 0; i < 10_000 && h.results.length === 0; i++) {
      await settle();
      for (const p of h.packets()) {
        if (p.op !== 'DATA') throw new Error(`unexpected ${p.op}`);
        got.push(p.data);
        numbers.push(p.block);
      }
      if (t.hi > 0) t.onAck(t.hi & 0xffff, false);
    }
    const wrap = numbers.indexOf(65535);
    expect(numbers.slice(wrap, wrap + 3)).toEqual([65535, 0, 1]);
    expect(numbers).toHaveLength(65541);
    expect(h.results).toEqual(['ok']);
    expect(Buffer.concat(got).equals(content)).toBe(true);
    expect(t.bytes).toBe(content.length);
  });

  it('an armed window counts as sent when its ACK fires, and the next one is armed', async () => {
    const h = harness({ arm: true });
    const t = h.read(bufferFile(randomBytes(512 * 20)), [['windowsize', '4']]);
    t.start();
    await settle();
    t.onAck(0, false);
    await settle();
    expect(h.take()).toHaveLength(5);
    // Window 1..4 is out and laid out 5..8: armed for ACK 4.
    expect(h.armed.at(-1)).toEqual({ ack: 4, count: 4 });
    // The socket sent 5..8 itself when ACK 4 arrived: nothing goes out from JavaScript, the next window is armed.
    t.onAck(4, true);
    expect(h.take()).toEqual([]);
    expect(h.stats.windowsOnAck).toBe(1);
    expect(t.hi).toBe(8);
    expect(h.armed.at(-1)).toEqual({ ack: 8, count: 4 });
    // A partial ACK: not armed for it, so the window is resent from JavaScript.
    t.onAck(6, false);
    expect(h.take()).toEqual(['DATA 7 512', 'DATA 8 512', 'DATA 9 512', 'DATA 10 512']);
  });

  it('an ERROR from the client ends the transfer and releases the file; ERROR 8 after the OACK is a size probe', async () => {
    for (const [options, code, result] of [
      [[], 0, 'client-error'],
      [[['tsize', '0']], 8, 'probe'],
    ] as Array<[OptionList, number, Result]>) {
      const h = harness();
      let closed = 0;
      const file = { ...bufferFile(randomBytes(3000)), close: () => void closed++ };
      const t = h.read(file, options);
      t.start();
      await settle();
      h.take();
      t.onMessage(encodeError(code, 'no'));
      expect(h.results).toEqual([result]);
      expect(closed).toBe(1);
      // Nothing more happens after the end.
      t.onAck(1, false);
      t.expired(1e9);
      expect(h.take()).toEqual([]);
      expect(h.results).toEqual([result]);
    }
  });
});

describe('write transfer', () => {
  function sink() {
    const parts: Buffer[] = [];
    const s = { completed: false, aborted: false, parts };
    const u: UploadSink = {
      target: '/up/f',
      write: async (data, position) => {
        expect(position).toBe(parts.reduce((n, p) => n + p.length, 0));
        parts.push(Buffer.from(data));
      },
      complete: async () => {
        s.completed = true;
      },
      abort: async () => {
        s.aborted = true;
      },
    };
    return { s, u };
  }

  it('WRQ -> ACK 0, each DATA -> its ACK, a repeated DATA is re-acknowledged, the short block completes it', async () => {
    const h = harness();
    const { s, u } = sink();
    const t = new WriteTransfer(h.port, h.request([]), h.env, u, 1 << 20);
    t.start();
    expect(h.take()).toEqual(['ACK 0']);
    const a = randomBytes(512);
    const b = randomBytes(100);
    t.onMessage(encodeData(1, a));
    await settle();
    expect(h.take()).toEqual(['ACK 1']);
    t.onMessage(encodeData(1, a));
    await settle();
    expect(h.take()).toEqual(['ACK 1']);
    t.onMessage(encodeData(2, b));
    await settle();
    expect(h.take()).toEqual(['ACK 2']);
    expect(h.results).toEqual(['ok']);
    expect(s.completed).toBe(true);
    expect(s.aborted).toBe(false);
    expect(Buffer.concat(s.parts).equals(Buffer.concat([a, b]))).toBe(true);
    expect(h.stats.bytesReceived).toBe(612);
  });

  it('with options the first answer is the OACK; an ERROR from the client aborts the upload', async () => {
    const h = harness();
    const { s, u } = sink();
    const t = new WriteTransfer(h.port, h.request([['blksize', '1024']]), h.env, u, 1 << 20);
    t.start();
    expect(h.take()).toEqual(['OACK blksize=1024']);
    t.onMessage(encodeData(1, randomBytes(1024)));
    await settle();
    expect(h.take()).toEqual(['ACK 1']);
    t.onMessage(encodeError(0, 'cancelled by user'));
    expect(h.results).toEqual(['client-error']);
    expect(s.aborted).toBe(true);
    expect(s.completed).toBe(false);
  });

  it('an upload beyond the size limit gets ERROR 3 and is aborted', async () => {
    const h = harness();
    const { s, u } = sink();
    const t = new WriteTransfer(h.port, h.request([]), h.env, u, 600);
    t.start();
    t.onMessage(encodeData(1, randomBytes(512)));
    await settle();
    t.onMessage(encodeData(2, randomBytes(512)));
    await settle();
    expect(h.take()).toEqual(['ACK 0', 'ACK 1', 'ERROR 3']);
    expect(h.results).toEqual(['write-error']);
    expect(s.aborted).toBe(true);
  });
});

describe('option negotiation of a read request', () => {
  function requestEnv(file: TftpFile) {
    const refused: Array<{ code: number; why: string }> = [];
    const env: RequestEnv = {
      log: silentLogger,
      limited: () => {},
      stats: newStats({ activeTransfers: () => 0, openSockets: () => 0 }),
      source: { open: async () => file },
      limits: LIMITS,
      maxUploadBytes: 1 << 20,
      netasciiMax: 1 << 20,
      closing: () => false,
      refuse: (_c, code, _m, why) => refused.push({ code, why }),
      openFailed: () => {},
    };
    return { env, refused };
  }
  const ask = (options: OptionList) => ({ client, filename: 'f', mode: 'octet', options });

  it('blksize, tsize, timeout and windowsize are granted in the OACK, windowsize capped at the server maximum', async () => {
    const file = bufferFile(randomBytes(5000));
    const { env } = requestEnv(file);
    const p = await prepareRead(
      env,
      ask([
        ['blksize', '1400'],
        ['tsize', '0'],
        ['timeout', '3'],
        ['windowsize', '100'],
      ]),
    );
    expect(p?.neg.oack).toEqual([
      ['blksize', '1400'],
      ['tsize', '5000'],
      ['timeout', '3'],
      ['windowsize', '64'],
    ]);
    // The granted timeout is the retransmission interval, fixed (RFC 2349).
    const h = harness();
    const t = new ReadTransfer(h.port, { ...h.request([]), neg: p!.neg }, h.env, file);
    expect(t.timer.maxRto).toBe(3000);
    expect(t.timer.fixed).toBe(true);
    t.start();
    await settle();
    expect(h.take()).toEqual(['OACK blksize=1400 tsize=5000 timeout=3 windowsize=64']);
  });

  it("the file's blksizeCap lowers the blksize in the OACK; it never raises the server's maximum", async () => {
    const capped = await prepareRead(
      requestEnv({ ...bufferFile('x'), blksizeCap: 1024 }).env,
      ask([['blksize', '1468']]),
    );
    expect(capped?.neg.oack).toEqual([['blksize', '1024']]);
    const above = await prepareRead(
      requestEnv({ ...bufferFile('x'), blksizeCap: 9000 }).env,
      ask([['blksize', '8192']]),
    );
    expect(above?.neg.oack).toEqual([['blksize', '1468']]);
    const none = await prepareRead(requestEnv(bufferFile('x')).env, ask([['blksize', '1200']]));
    expect(none?.neg.oack).toEqual([['blksize', '1200']]);
  });

  it('the cap survives netascii conversion, and an out-of-range value is refused with ERROR 8', async () => {
    const { env } = requestEnv({ ...bufferFile('a\nb\n'), blksizeCap: 512 });
    const p = await prepareRead(env, { ...ask([['blksize', '1468']]), mode: 'netascii' });
    expect(p?.neg.blksize).toBe(512);
    expect(p?.file.size).toBe(6);
    const r = requestEnv(bufferFile('x'));
    expect(await prepareRead(r.env, ask([['blksize', '7']]))).toBeUndefined();
    expect(r.refused).toEqual([{ code: 8, why: 'blksize 7 is outside 8..65464' }]);
  });

  it('a source that has no such file is answered File not found', async () => {
    const { env, refused } = requestEnv(bufferFile('x'));
    const p = await prepareRead({ ...env, source: bufferSource({}) }, ask([]));
    expect(p).toBeUndefined();
    expect(refused).toEqual([{ code: 1, why: 'not in buffer source' }]);
  });
});
