/**
 * The journal's group commit under load (native/journal.c): at or above its rate (journaled writes a second) the
 * thread waits to gather several writes per fdatasync; below it, it never waits. Counted by the addon
 * (journalStats: fdatasyncs made, those that waited), not timed.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type JournalHandle, native } from '../../src/native/index.js';
import { readRecords, segmentPrefix, segments } from '../../src/store/journal-recovery.js';

const addon = native.leaseJournal;
const open: JournalHandle[] = [];
afterEach(() => {
  for (const h of open.splice(0)) addon!.journalClose(h);
});

/**
 * `n` records appended `perTick` at a time every `tickMs` (one kick each, as the store kicks once per turn), then
 * waits until all are durable; the journal's [groups, delayed].
 */
async function drive(groupUs: number, groupRate: number, n: number, perTick: number, tickMs: number, sync?: number) {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'plinth-journal-group-')), 'plinth.db');
  let durable = 0;
  const h = addon!.journalOpen(
    segmentPrefix(file),
    1,
    1,
    8 << 20,
    (seq) => (durable = seq),
    groupUs,
    groupRate,
    ...(sync === undefined ? [] : [sync]),
  );
  open.push(h);
  for (let sent = 0; sent < n; ) {
    for (let i = 0; i < perTick && sent < n; i++, sent++) {
      addon!.journalAppend(h, `Pleases\n1\nk${sent}{"n":${sent}}`);
    }
    // sync 0: the caller writes (journalFlush, as the store does once per turn) and onDurable is never called.
    if (sync === 0) durable = addon!.journalFlush(h)[0]!;
    else addon!.journalKick(h);
    await new Promise((r) => setTimeout(r, tickMs));
  }
  while (durable < n) await new Promise((r) => setTimeout(r, 5));
  const [groups, delayed, , syncs] = addon!.journalStats!(h);
  return { groups, delayed, syncs };
}

describe.skipIf(!addon?.journalStats)('journal group commit', () => {
  it('under load, one fdatasync covers several writes', async () => {
    // 400 writes one at a time every millisecond or so (up to 1,000 a second; 100 on a machine whose timers lag
    // 10 ms), above a rate of 10: each group waits for about four arrivals, at most 50 ms here.
    const { groups, delayed } = await drive(50_000, 10, 400, 1, 1);
    expect(delayed).toBeGreaterThan(0);
    expect(groups).toBeLessThan(400 / 2);
  });

  it('below its rate, or with groupUs 0, no write waits', async () => {
    // 300 writes one every 2 ms or so: at most 500 a second (timers only come later), below 100,000.
    expect((await drive(1000, 100_000, 300, 1, 2)).delayed).toBe(0);
    expect((await drive(0, 1, 400, 1, 1)).delayed).toBe(0);
  });

  it('refuses a wait out of range', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'plinth-journal-group-')), 'plinth.db');
    expect(() => addon!.journalOpen(segmentPrefix(file), 1, 1, 1 << 16, () => {}, 200_000, 1)).toThrow(/groupUs/);
    expect(() => addon!.journalOpen(segmentPrefix(file), 1, 1, 1 << 16, () => {}, -1, 1)).toThrow(/groupUs/);
  });
});

describe.skipIf(!addon?.journalStats)("journal durability (the store's leaseDurability)", () => {
  it('fdatasyncs every group by default, and none with sync 0 (durable once written to the kernel)', async () => {
    const disk = await drive(0, 1, 200, 1, 1);
    expect(disk.groups).toBeGreaterThan(0);
    expect(disk.syncs).toBe(disk.groups);
    const kernel = await drive(0, 1, 200, 1, 1, 0);
    expect(kernel.groups).toBeGreaterThan(0);
    expect(kernel.syncs).toBe(0);
  });

  it('with sync 0, journalFlush writes what was appended on the caller, with no callback', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'plinth-journal-group-')), 'plinth.db');
    let called = 0;
    // Segments of 4 KiB: 200 records of ~55 bytes rotate through three (the thread makes them ahead).
    const h = addon!.journalOpen(segmentPrefix(file), 1, 1, 4096, () => called++, 0, 1, 0);
    open.push(h);
    const written = () => segments(file).flatMap((sg) => readRecords(readFileSync(sg.path)).map((r) => r.seq));
    for (let i = 1; i <= 200; i += 10) {
      for (let k = i; k < i + 10; k++) addon!.journalAppend(h, `Pleases\n1\nk${k}{"n":${k}}`);
      expect(written()).not.toContain(i); // appended, not written: the flush writes
      const [durable, gen, first] = addon!.journalFlush(h);
      expect(durable).toBe(i + 9);
      expect(written()).toEqual(expect.arrayContaining(Array.from({ length: 10 }, (_, k) => i + k)));
      if (i > 150) expect([gen! > 1, first! > 1]).toEqual([true, true]);
    }
    expect(addon!.journalStats!(h)[0]).toBe(20); // one write per flush
    await new Promise((r) => setTimeout(r, 20));
    expect(called).toBe(0);
    expect(addon!.journalClose(h)).toBe(200);
    open.splice(open.indexOf(h), 1);
    // Only for sync 0: a journal that fdatasyncs is written by its thread.
    const h2 = addon!.journalOpen(segmentPrefix(`${file}2`), 1, 1, 4096, () => {}, 0, 1, 1);
    open.push(h2);
    expect(() => addon!.journalFlush(h2)).toThrow(/sync 0/);
  });

  it('refuses a sync that is neither 0 nor 1', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'plinth-journal-group-')), 'plinth.db');
    expect(() => addon!.journalOpen(segmentPrefix(file), 1, 1, 1 << 16, () => {}, 0, 1, 2)).toThrow(/sync 0 or 1/);
  });
});
