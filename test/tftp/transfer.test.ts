/**
 * The TFTP transfer state machines without a socket: a recording port stands in for the transfer socket, a number
 * for the clock, and the test plays the client (ACKs, DATA, ERRORs, duplicates) by calling the transfer's handlers.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
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
import { prepareRead, prepareWrite, type RequestEnv } from '../../src/tftp/requests.js';
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

  for (const timeout of [1, 3]) {
    it(`timeout ${timeout} asked (RFC 2349): every retransmission exactly ${timeout} s after the last send, no back-off, no estimate`, async () => {
      const h = harness();
      const t = h.read(bufferFile(randomBytes(2000)), [['timeout', String(timeout)]]);
      const tick = h.ticker(t);
      t.start();
      await settle();
      expect(h.take()).toEqual([`OACK timeout=${timeout}`]);
      // A fast client: 30 ms round trips, which would take an adaptive estimate down to its 200 ms floor.
      h.advance(30);
      t.onAck(0, false);
      await settle();
      h.advance(30);
      t.onAck(1, false);
      expect(h.take()).toEqual(['DATA 1 512', 'DATA 2 512']);
      const progressAt = h.now();
      const ms = timeout * 1000;
      // One ms before the interval: nothing.
      h.advance(ms - 1);
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
      // The same give-up rule as without the option (maxRetries x the timeout without progress): 5 x N s.
      expect(resentAt).toEqual([1, 2, 3, 4].map((k) => k * ms));
      expect(h.results).toEqual(['timeout']);
      expect(h.now() - progressAt).toBe(5 * ms);
    });
  }

  it('timeout 1 asked: the first packet nobody answers goes again at +1 s and +2 s, then the transfer ends', async () => {
    const h = harness();
    const t = h.read(bufferFile(randomBytes(100)), [['timeout', '1']]);
    const tick = h.ticker(t);
    const t0 = h.now();
    t.start();
    await settle();
    const at: number[] = [];
    for (let i = 0; i < 10 && h.results.length === 0; i++) {
      if (h.take().length > 0) at.push(h.now() - t0);
      h.advance(t.timer.deadline - h.now());
      tick.checkExpired();
    }
    if (h.take().length > 0) at.push(h.now() - t0);
    expect(at).toEqual([0, 1000, 2000]);
    expect(h.results).toEqual(['unanswered']);
    expect(h.now() - t0).toBe(3000);
  });

  it('the interval runs from the send: a window sent when its chunk finished loading gets the whole timeout', async () => {
    const h = harness();
    let release: () => void = () => {};
    const content = randomBytes(300 * 1024);
    const file = bufferFile(content);
    // Chunks after the first load only when the test says so (a cold file on a slow disk).
    const slow: TftpFile = {
      ...file,
      read: (pos, len) =>
        pos === 0 ? file.read(pos, len) : new Promise((r) => (release = () => r(file.read(pos, len)))),
    };
    const t = h.read(slow, [
      ['timeout', '2'],
      ['blksize', '1024'],
    ]);
    t.start();
    await settle();
    t.onAck(0, false);
    await settle();
    h.take();
    // Lock-step to the end of the first chunk (128 KiB): the next block waits for its chunk.
    for (let b = 1; b <= 128; b++) t.onAck(b, false);
    await settle();
    expect(h.take().at(-1)).toBe('DATA 128 1024');
    t.onAck(128, false);
    await settle();
    expect(h.take()).toEqual([]);
    h.advance(1500);
    release();
    await settle();
    await settle();
    expect(h.take()).toEqual(['DATA 129 1024']);
    expect(t.timer.deadline).toBe(h.now() + 2000);
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
    const s = { completed: false, aborted: false, parts, length: 0 };
    const u: UploadSink = {
      target: '/up/f',
      write: async (data, position) => {
        // Every write lands right after the one before: nothing written twice, skipped or out of order.
        expect(position).toBe(s.length);
        parts.push(Buffer.from(data));
        s.length += data.length;
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

  /** An upload of `blocks` full blocks of `blksize` and a short final one, and the DATA packets that carry it. */
  function upload(blocks: number, blksize = 512) {
    const content = randomBytes(blocks * blksize + 100);
    const block = (n: number) => encodeData(n & 0xffff, content.subarray((n - 1) * blksize, n * blksize));
    return { content, block, last: blocks + 1 };
  }

  it('timeout 2 asked on a WRQ: the last ACK is repeated exactly every 2 s, then the transfer gives up', async () => {
    const h = harness();
    const { s, u } = sink();
    const t = new WriteTransfer(h.port, h.request([['timeout', '2']]), h.env, u, 1 << 20);
    const tick = h.ticker(t);
    t.start();
    expect(h.take()).toEqual(['OACK timeout=2']);
    h.advance(20);
    t.onMessage(encodeData(1, randomBytes(512)));
    await settle();
    expect(h.take()).toEqual(['ACK 1']);
    const progressAt = h.now();
    h.advance(1999);
    tick.checkExpired();
    expect(h.take()).toEqual([]);
    const resentAt: number[] = [];
    for (let i = 0; i < 100 && h.results.length === 0; i++) {
      h.advance(t.timer.deadline - h.now());
      tick.checkExpired();
      const out = h.take();
      if (out.length > 0) {
        expect(out).toEqual(['ACK 1']);
        resentAt.push(h.now() - progressAt);
      }
    }
    expect(resentAt).toEqual([2000, 4000, 6000, 8000]);
    expect(h.results).toEqual(['timeout']);
    expect(h.now() - progressAt).toBe(10_000);
    expect(s.aborted).toBe(true);
  });

  it('windowsize 4 (RFC 7440): one ACK after blocks 4 and 8 and the final one, the bytes in order', async () => {
    const h = harness();
    const { s, u } = sink();
    const t = new WriteTransfer(h.port, h.request([['windowsize', '4']]), h.env, u, 1 << 20);
    t.start();
    expect(h.take()).toEqual(['OACK windowsize=4']);
    const up = upload(10);
    const acks: string[] = [];
    for (let b = 1; b <= up.last; b++) {
      t.onMessage(up.block(b));
      await settle();
      for (const a of h.take()) acks.push(`${a} after ${b}`);
    }
    expect(acks).toEqual(['ACK 4 after 4', 'ACK 8 after 8', 'ACK 11 after 11']);
    expect(h.results).toEqual(['ok']);
    expect(Buffer.concat(s.parts).equals(up.content)).toBe(true);
    expect(t.line().options).toMatchObject({ windowsize: 4 });
  });

  it('windowsize 4: the blocks of a window arriving back to back are queued and written in order', async () => {
    const h = harness();
    const { s, u } = sink();
    const t = new WriteTransfer(h.port, h.request([['windowsize', '4']]), h.env, u, 1 << 20);
    t.start();
    h.take();
    const up = upload(7);
    // No write completes between the datagrams of a window (they arrive in one turn of the loop).
    for (let b = 1; b <= 4; b++) t.onMessage(up.block(b));
    expect(h.take()).toEqual([]);
    await settle();
    await settle();
    expect(h.take()).toEqual(['ACK 4']);
    for (let b = 5; b <= up.last; b++) t.onMessage(up.block(b));
    for (let i = 0; i < 6; i++) await settle();
    expect(h.take()).toEqual(['ACK 8']);
    expect(h.results).toEqual(['ok']);
    expect(Buffer.concat(s.parts).equals(up.content)).toBe(true);
  });

  it('windowsize 4, block 6 lost (RFC 7440 section 4): ACK 5 once, the client resends from 6, nothing written twice', async () => {
    const h = harness();
    const { s, u } = sink();
    const t = new WriteTransfer(h.port, h.request([['windowsize', '4']]), h.env, u, 1 << 20);
    t.start();
    h.take();
    const up = upload(12);
    const send = async (...blocks: number[]) => {
      for (const b of blocks) {
        t.onMessage(up.block(b));
        await settle();
      }
      return h.take();
    };
    expect(await send(1, 2, 3, 4)).toEqual(['ACK 4']);
    // 6 is lost: 7 shows the gap and gets ACK 5; 8 gets nothing more (one ACK per gap).
    expect(await send(5, 7, 8)).toEqual(['ACK 5']);
    // The client goes back to 6: a new window 6..9.
    expect(await send(6, 7, 8, 9)).toEqual(['ACK 9']);
    expect(await send(10, 11, 12, 13)).toEqual(['ACK 13']);
    expect(h.results).toEqual(['ok']);
    // The sink checks every write lands right after the one before: nothing was written twice or out of order.
    expect(Buffer.concat(s.parts).equals(up.content)).toBe(true);
    expect(h.stats.bytesReceived).toBe(up.content.length);
  });

  it('windowsize 4, the first block of a window lost: the window before it is acknowledged again, once', async () => {
    const h = harness();
    const { s, u } = sink();
    const t = new WriteTransfer(h.port, h.request([['windowsize', '4']]), h.env, u, 1 << 20);
    t.start();
    h.take();
    const up = upload(8);
    for (const b of [1, 2, 3, 4]) t.onMessage(up.block(b));
    for (let i = 0; i < 6; i++) await settle();
    expect(h.take()).toEqual(['ACK 4']);
    for (const b of [6, 7, 8]) t.onMessage(up.block(b));
    await settle();
    expect(h.take()).toEqual(['ACK 4']);
    for (const b of [5, 6, 7, 8, 9]) t.onMessage(up.block(b));
    for (let i = 0; i < 8; i++) await settle();
    expect(h.take()).toEqual(['ACK 8', 'ACK 9']);
    expect(Buffer.concat(s.parts).equals(up.content)).toBe(true);
  });

  it('windowsize 4, our ACK lost: the repeated window gets its ACK again once, and is not written twice', async () => {
    const h = harness();
    const { s, u } = sink();
    const t = new WriteTransfer(h.port, h.request([['windowsize', '4']]), h.env, u, 1 << 20);
    t.start();
    h.take();
    const up = upload(5);
    for (const b of [1, 2, 3, 4]) {
      t.onMessage(up.block(b));
      await settle();
    }
    expect(h.take()).toEqual(['ACK 4']);
    // The client timed out waiting for ACK 4 and sends the window again.
    for (const b of [1, 2, 3, 4]) {
      t.onMessage(up.block(b));
      await settle();
    }
    expect(h.take()).toEqual(['ACK 4']);
    for (const b of [5, 6]) {
      t.onMessage(up.block(b));
      await settle();
    }
    expect(h.take()).toEqual(['ACK 6']);
    expect(h.results).toEqual(['ok']);
    expect(Buffer.concat(s.parts).equals(up.content)).toBe(true);
  });

  it('windowsize 4, the client goes quiet mid-window: the timeout acknowledges the last block written', async () => {
    const h = harness();
    const { s, u } = sink();
    const t = new WriteTransfer(h.port, h.request([['windowsize', '4']]), h.env, u, 1 << 20);
    const tick = h.ticker(t);
    t.start();
    h.take();
    const up = upload(5);
    for (const b of [1, 2]) {
      t.onMessage(up.block(b));
      await settle();
    }
    expect(h.take()).toEqual([]);
    h.advance(t.timer.deadline - h.now());
    tick.checkExpired();
    expect(h.take()).toEqual(['ACK 2']);
    // The client continues with a window from 3.
    for (const b of [3, 4, 5, 6]) {
      t.onMessage(up.block(b));
      await settle();
    }
    expect(h.take()).toEqual(['ACK 6']);
    expect(h.results).toEqual(['ok']);
    expect(Buffer.concat(s.parts).equals(up.content)).toBe(true);
  });

  it('windowsize 16, blksize 8: block numbers roll over past 65535 on an upload', async () => {
    const h = harness();
    const { s, u } = sink();
    const t = new WriteTransfer(
      h.port,
      h.request([
        ['blksize', '8'],
        ['windowsize', '16'],
      ]),
      h.env,
      u,
      1 << 20,
    );
    t.start();
    h.take();
    const content = randomBytes(8 * 65540 + 3);
    const last = 65541;
    const acks: number[] = [];
    for (let b = 1; b <= last; b += 16) {
      for (let k = b; k < b + 16 && k <= last; k++)
        t.onMessage(encodeData(k & 0xffff, content.subarray((k - 1) * 8, k * 8)));
      await settle();
      for (const p of h.packets()) if (p.op === 'ACK') acks.push(p.block);
    }
    expect(h.results).toEqual(['ok']);
    expect(acks).toHaveLength(Math.ceil(last / 16));
    expect(acks.at(-1)).toBe(last & 0xffff);
    expect(Buffer.concat(s.parts).equals(content)).toBe(true);
  });

  it('an upload beyond the size limit inside a window gets ERROR 3 and is aborted', async () => {
    const h = harness();
    const { s, u } = sink();
    const t = new WriteTransfer(h.port, h.request([['windowsize', '8']]), h.env, u, 1500);
    t.start();
    h.take();
    const up = upload(6);
    for (let b = 1; b <= 6; b++) t.onMessage(up.block(b));
    await settle();
    expect(h.take()).toEqual(['ERROR 3']);
    expect(h.results).toEqual(['write-error']);
    expect(s.aborted).toBe(true);
    expect(s.completed).toBe(false);
  });
});

describe('option negotiation of a request', () => {
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

  it('a WRQ is granted windowsize too (RFC 7440 works both ways), capped at the same maximum, with the timeout', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'plinth-tftp-wrq-'));
    try {
      const { env } = requestEnv(bufferFile('x'));
      const p = await prepareWrite(
        { ...env, uploadDir: dir },
        ask([
          ['blksize', '1024'],
          ['windowsize', '100'],
          ['timeout', '2'],
        ]),
      );
      expect(p?.neg).toMatchObject({ windowsize: 64, timeout: 2 });
      expect(p?.neg.oack).toEqual([
        ['blksize', '1024'],
        ['windowsize', '64'],
        ['timeout', '2'],
      ]);
      await p?.sink.abort();
      expect(await readdir(dir)).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a source that has no such file is answered File not found', async () => {
    const { env, refused } = requestEnv(bufferFile('x'));
    const p = await prepareRead({ ...env, source: bufferSource({}) }, ask([]));
    expect(p).toBeUndefined();
    expect(refused).toEqual([{ code: 1, why: 'not in buffer source' }]);
  });
});
