/**
 * The lease journal's files and records as recovery reads them (the writer is native/journal.c): which segments a
 * database has, each record's payload (one putBatched item), and the replay every opener of a file store runs
 * before anything else reads it: every record after the database's applied mark, in order, in one transaction
 * with the new mark, then the segments are removed.
 */
import { readdirSync, readFileSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import type Database from 'better-sqlite3';
import { type BatchItem, journalApplied, journalApplyTransaction, type Prep } from './batch.mjs';
import { KINDS } from './store.js';

const KIND_NAMES = new Set<string>(KINDS);

/** Segment files: `<database>-putlog.<generation, 8 hex digits>` beside the database. */
export const segmentPrefix = (file: string) => `${file}-putlog`;
/** Held (flock) by the process whose journal writes the segments; recovery runs only under it. */
export const lockPath = (file: string) => `${file}-putlog.lock`;

/** The segments of `file`'s journal, oldest generation first. */
export function segments(file: string): { gen: number; path: string }[] {
  const dir = path.dirname(file);
  const base = `${path.basename(segmentPrefix(file))}.`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith(base) && /^[0-9a-f]{8}$/.test(n.slice(base.length)))
    .map((n) => ({ gen: Number.parseInt(n.slice(base.length), 16), path: path.join(dir, n) }))
    .sort((a, b) => a.gen - b.gen);
}

/**
 * One item as a record's payload: `P` (upsert) or `D` (delete), the kind, a newline, the key's length in UTF-16
 * units, a newline, the key, then the JSON. No escaping and no second JSON.stringify of the document: a string
 * concatenation the addon encodes as UTF-8 while copying it.
 */
export function encodeItem(it: BatchItem): string {
  return `${it.json === null ? 'D' : 'P'}${it.kind}\n${it.key.length}\n${it.key}${it.json ?? ''}`;
}

export function decodeItem(s: string): BatchItem | undefined {
  const a = s.indexOf('\n');
  const b = a < 0 ? -1 : s.indexOf('\n', a + 1);
  const n = b < 0 ? Number.NaN : Number(s.slice(a + 1, b));
  if ((s[0] !== 'P' && s[0] !== 'D') || !Number.isInteger(n) || b + 1 + n > s.length) return undefined;
  const kind = s.slice(1, a);
  // The kind becomes a table name in SQL: only the store's own, whatever a damaged file says.
  if (!KIND_NAMES.has(kind)) return undefined;
  const key = s.slice(b + 1, b + 1 + n);
  return { kind, key, json: s[0] === 'D' ? null : s.slice(b + 1 + n) };
}

const MAGIC = 0x314a4c50;
const HDR = 24;

/**
 * The records of one segment in order, up to the first that is not whole: a wrong magic (the preallocated zeros
 * after the last record), a length past the end, or a CRC that does not match (a write torn by a crash).
 */
export function readRecords(buf: Buffer): { seq: number; payload: string }[] {
  const out: { seq: number; payload: string }[] = [];
  for (let at = 0; at + HDR <= buf.length; ) {
    if (buf.readUInt32LE(at) !== MAGIC) break;
    const len = buf.readUInt32LE(at + 4);
    if (at + HDR + len > buf.length) break;
    const crc = crc32(buf.subarray(at + HDR, at + HDR + len), crc32(buf.subarray(at + 4, at + 16)));
    if (crc !== buf.readUInt32LE(at + 16)) break;
    out.push({ seq: Number(buf.readBigUInt64LE(at + 8)), payload: buf.toString('utf8', at + HDR, at + HDR + len) });
    at += HDR + len;
  }
  return out;
}

export type Recovered = { replayed: number; lastSeq: number; nextGen: number };

/**
 * Replays `file`'s journal into `db`: the records after the applied mark, in sequence order, stopping at a gap
 * (a record missing means those after it were never confirmed), in one transaction with the new mark; then the
 * segments go. Items are idempotent upserts and deletes, and the mark keeps records applied before a crash from
 * being applied again over a later write. Returns where a new journal continues.
 */
export function recoverJournal(db: Database.Database, prep: Prep, file: string): Recovered {
  const segs = segments(file);
  let last = journalApplied(db);
  const items: BatchItem[] = [];
  outer: for (const s of segs) {
    for (const r of readRecords(readFileSync(s.path))) {
      if (r.seq <= last) continue;
      const it = r.seq === last + 1 ? decodeItem(r.payload) : undefined;
      if (!it) break outer;
      items.push(it);
      last = r.seq;
    }
  }
  if (items.length) journalApplyTransaction(db, prep)(items, last);
  for (const s of segs) unlinkSync(s.path);
  return { replayed: items.length, lastSeq: last, nextGen: (segs.at(-1)?.gen ?? 0) + 1 };
}
