/**
 * The blob store without a daemon: content addressing, dedupe, concurrent uploads of the same bytes, gc under
 * the lock (an upload during gc is never torn or lost), pins at creation.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { blobRel, collectGarbage, digestOfBlobRel, filesLock, viewRel } from '../../src/files/blobs.js';
import { pinCurrentFiles } from '../../src/files/pins.js';
import { removeFile, writeFileAtomically } from '../../src/files/store-files.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

let dir: string;
let root: string;
let tmp: string;
let store: Store;
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const up = (rel: string, body: string | Buffer) =>
  writeFileAtomically(store, root, tmp, rel, Readable.from([Buffer.from(body)]));
const blobCount = () =>
  readdirSync(path.join(root, '.blobs/sha256'), { recursive: true }).filter((n) => /[0-9a-f]{64}$/.test(String(n)))
    .length;

beforeEach(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'plinth-blobs-'));
  root = path.join(dir, 'files');
  tmp = path.join(dir, 'tmp');
  mkdirSync(root); // the daemon makes it at start
  store = openSqliteStore(path.join(dir, 'plinth.db'));
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('content-addressed blob store', () => {
  it('an upload is stored under its sha256 and the path is a hard link to it', async () => {
    const { info } = await up('a/vmlinuz', 'kernel');
    expect(info.sha256).toBe(sha('kernel'));
    const blob = path.join(root, blobRel(sha('kernel')));
    expect(readFileSync(blob, 'utf8')).toBe('kernel');
    expect(statSync(blob).ino).toBe(statSync(path.join(root, 'a/vmlinuz')).ino);
    expect(blobRel(sha('kernel'))).toBe(`.blobs/sha256/${sha('kernel').slice(0, 2)}/${sha('kernel')}`);
    expect(digestOfBlobRel(blobRel(sha('kernel')))).toBe(sha('kernel'));
    expect(digestOfBlobRel(viewRel(sha('kernel'), 'a/vmlinuz'))).toBe(sha('kernel'));
    expect(digestOfBlobRel('.blobs/sha256/00/' + sha('kernel'))).toBeUndefined();
  });

  it('a PUT over a path moves the path to the new blob; the old blob stays until gc', async () => {
    await up('k', 'one');
    await up('k', 'two');
    expect(readFileSync(path.join(root, 'k'), 'utf8')).toBe('two');
    expect(readFileSync(path.join(root, blobRel(sha('one'))), 'utf8')).toBe('one');
    const r = await collectGarbage(root, async () => new Set());
    expect(r.removed).toEqual([{ sha256: sha('one'), size: 3 }]);
    expect(r.freedBytes).toBe(3);
    expect(readFileSync(path.join(root, 'k'), 'utf8')).toBe('two');
  });

  it('the same bytes uploaded at once, to one path or several, end as one blob and whole files', async () => {
    const body = Buffer.alloc(3 << 20, 7);
    await Promise.all([up('x', body), up('x', body), up('y', body), up('z/w', body)]);
    expect(blobCount()).toBe(1);
    for (const p of ['x', 'y', 'z/w']) expect(sha(readFileSync(path.join(root, p)))).toBe(sha(body));
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('gc keeps pinned blobs and linked ones; a pin made while gc ran is honoured', async () => {
    await up('pinned', 'p');
    await up('linked', 'l');
    await up('late', 'late');
    await removeFile(store, root, 'pinned');
    await removeFile(store, root, 'late');
    let asked = 0;
    // The second look at the pins (just before the sweep) sees a bootenv created in between.
    const r = await collectGarbage(root, async () => new Set(asked++ === 0 ? [sha('p')] : [sha('p'), sha('late')]));
    expect(r.removed).toEqual([]);
    expect(blobCount()).toBe(3);
    const r2 = await collectGarbage(root, async () => new Set([sha('p')]));
    expect(r2.removed.map((x) => x.sha256)).toEqual([sha('late')]);
    expect(r2.kept).toBe(2);
  });

  it('an upload during gc waits for it: the blob it reuses is not swept from under it', async () => {
    const body = 'orphaned, then uploaded again while gc ran';
    await up('gone', body);
    await removeFile(store, root, 'gone'); // its blob is now garbage
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let asked = 0;
    // gc pauses at its second look at the pins: after it chose what to sweep, before it sweeps.
    const gc = collectGarbage(root, async () => {
      if (asked++ === 1) await held;
      return new Set();
    });
    await new Promise((r) => setTimeout(r, 20));
    const upload = up('again', body);
    await new Promise((r) => setTimeout(r, 50));
    release();
    expect((await gc).removed.map((x) => x.sha256)).toEqual([sha(body)]);
    await upload;
    expect(readFileSync(path.join(root, 'again'), 'utf8')).toBe(body);
    // The upload ran after the sweep: the blob is there again, and the path links it.
    const blob = path.join(root, blobRel(sha(body)));
    expect(readFileSync(blob, 'utf8')).toBe(body);
    expect(statSync(blob).ino).toBe(statSync(path.join(root, 'again')).ino);
  });

  it('the lock: shared holders run together, exclusive alone', async () => {
    const lock = filesLock(path.join(dir, 'elsewhere'));
    const order: string[] = [];
    const a = lock.withShared(async () => {
      order.push('a+');
      await new Promise((r) => setTimeout(r, 20));
      order.push('a-');
    });
    const x = lock.withExclusive(async () => {
      order.push('x');
    });
    const b = lock.withShared(async () => {
      order.push('b');
    });
    await Promise.all([a, x, b]);
    expect(order.indexOf('x')).toBeGreaterThan(order.indexOf('a-'));
  });

  it('a bootenv without artifacts is pinned to its kernel and initrds as they are; given pins are kept', async () => {
    const files: Record<string, string> = { 'os/k': sha('k'), 'os/i': sha('i') };
    const infoOf = async (p: string) => (files[p] ? { sha256: files[p]! } : undefined);
    expect(
      await pinCurrentFiles({ name: 'b', kernel: 'os/k', initrds: ['os/i', 'os/none'], artifacts: [] }, infoOf),
    ).toMatchObject({
      artifacts: [
        { path: 'os/k', sha256: sha('k') },
        { path: 'os/i', sha256: sha('i') },
      ],
    });
    const given = [{ path: 'os/k', sha256: 'f'.repeat(64) }];
    expect((await pinCurrentFiles({ kernel: 'os/k', artifacts: given }, infoOf)).artifacts).toBe(given);
  });
});
