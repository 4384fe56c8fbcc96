/**
 * A datagram queued with a journaled write (store.ts DurableSend, native/journal.c journalAppendSend) leaves from
 * the journal's thread after its record is written and fdatasynced ('disk'), or from the event loop right after
 * its turn's write ('kernel'), never for a write the journal refused; a send the socket refuses is reported with
 * its errno and the write still resolves.
 */
import dgram from 'node:dgram';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { readRecords, segmentPrefix, segments } from '../../src/store/journal-recovery.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { DurableSend } from '../../src/store/store.js';

const DURABILITIES = ['disk', 'kernel'] as const;
const dbFile = () => path.join(mkdtempSync(path.join(tmpdir(), 'plinth-journal-send-')), 'plinth.db');
const LOOPBACK = 0x7f000001;
const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

/** A UDP receiver on loopback: each datagram as text, with what the journal's segments held when it arrived. */
async function receiver(file: string) {
  const s = dgram.createSocket('udp4');
  const got: { text: string; journaled: string[] }[] = [];
  s.on('message', (m) => {
    // The segments' records when it arrived (a directory in a segment's place, as the second test makes, skipped).
    const journaled = segments(file).flatMap((seg) => {
      try {
        return readRecords(readFileSync(seg.path)).map((r) => r.payload);
      } catch {
        return [];
      }
    });
    got.push({ text: m.toString(), journaled });
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  closers.push(() => s.close());
  return { port: s.address().port, got };
}

/** A sending socket's fd from the addon (the kind the DHCP server's native path owns). */
function senderFd(): number {
  const fd = native.dhcpSockets!.openUdp4(null, 0, '127.0.0.1');
  closers.push(() => native.dhcpSockets!.closeFd(fd));
  return fd;
}

function datagram(fd: number, text: string, port: number, outcomes: Map<string, number>): DurableSend {
  return {
    fd,
    buf: Buffer.from(text),
    address: LOOPBACK,
    port,
    taken: false,
    sent: (errno) => outcomes.set(text, errno),
  };
}

describe.skipIf(!native.caps.journalSend || !native.dhcpSockets)('datagrams sent by the lease journal', () => {
  it.each(DURABILITIES)(
    '%s: each leaves after its record is in the journal, reported before its write resolves',
    async (durability) => {
      const file = dbFile();
      const store = openSqliteStore(file, { durability });
      const rx = await receiver(file);
      const fd = senderFd();
      const outcomes = new Map<string, number>();
      const sends = Array.from({ length: 20 }, (_, i) => datagram(fd, `ack-${i}`, rx.port, outcomes));
      const writes = sends.map((d, i) =>
        store.putBatched('leases', `10.0.0.${i}`, { n: i }, d).then(() => {
          // Resolved: the thread reported the send first.
          expect(outcomes.get(`ack-${i}`)).toBe(0);
        }),
      );
      expect(sends.every((d) => d.taken)).toBe(true);
      expect(outcomes.size).toBe(0); // queued: written once the turn's writes are all in
      // 'kernel': written and sent by this thread at the end of the turn (no journal thread to wait for), so all
      // are reported before the next turn's first immediate.
      await new Promise((r) => setImmediate(r));
      if (durability === 'kernel') expect(outcomes.size).toBe(20);
      await Promise.all(writes);
      for (let t = 0; rx.got.length < 20 && t < 100; t++) await new Promise((r) => setTimeout(r, 10));
      expect(rx.got.map((g) => g.text).sort()).toEqual(sends.map((d) => d.buf.toString()).sort());
      for (const g of rx.got) {
        const i = Number(g.text.slice(4));
        expect(g.journaled.some((p) => p.includes(`10.0.0.${i}{`))).toBe(true);
      }
      await store.close();
    },
  );

  it.each(DURABILITIES)(
    '%s: a write the journal refuses sends nothing; a refused send is reported',
    async (durability) => {
      const file = dbFile();
      // Segments of 4 KiB, and a directory where the second one should go: the rotation fails, as in journal.test.
      const store = openSqliteStore(file, { segmentBytes: 4096, durability });
      mkdirSync(`${segmentPrefix(file)}.00000002`);
      const rx = await receiver(file);
      const fd = senderFd();
      const outcomes = new Map<string, number>();
      const results: { text: string; taken: boolean; ok: boolean }[] = [];
      for (let i = 0; i < 200; i += 10) {
        const round = Array.from({ length: 10 }, (_, j) => {
          const d = datagram(fd, `ack-${i + j}`, rx.port, outcomes);
          const w = store.putBatched('leases', `k${i + j}`, { pad: 'x'.repeat(40) }, d);
          return w.then(
            () => results.push({ text: `ack-${i + j}`, taken: d.taken, ok: true }),
            () => results.push({ text: `ack-${i + j}`, taken: d.taken, ok: false }),
          );
        });
        await Promise.all(round);
      }
      const refused = results.filter((r) => !r.ok);
      expect(refused.length).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 200));
      const arrived = new Set(rx.got.map((g) => g.text));
      // Sent by the thread: exactly the writes it took that resolved. Refused ones never; after the journal went
      // down, the writes go through the writer thread and their datagrams stay the caller's (not taken).
      expect([...arrived].sort()).toEqual(
        results
          .filter((r) => r.ok && r.taken)
          .map((r) => r.text)
          .sort(),
      );
      for (const r of refused) expect(outcomes.has(r.text)).toBe(false);
      expect(results.some((r) => r.ok && !r.taken)).toBe(true);
      await store.close();

      // A file's fd is not a socket: reported with ENOTSOCK, and the write is durable all the same.
      const file2 = dbFile();
      const s2 = openSqliteStore(file2, { durability });
      const notSocket = openSync(file2 + '.not-a-socket', 'w');
      closers.push(() => closeSync(notSocket));
      const out2 = new Map<string, number>();
      await s2.putBatched('leases', 'a', { v: 1 }, datagram(notSocket, 'lost', 9, out2));
      expect(out2.get('lost')).toBe(88); // ENOTSOCK
      expect((await s2.list('leases')).items.map((i) => i.key)).toEqual(['a']);
      await s2.close();
    },
  );
});
