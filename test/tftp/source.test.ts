import { mkdir, mkdtemp, open, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferSource, chainSources, fileRootSource, functionSource, type TftpSource } from '../../src/tftp/source.js';

const client = { address: '192.0.2.10', port: 2000 };
let dir: string;
let root: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'plinth-tftp-src-'));
  root = path.join(dir, 'root');
  await mkdir(path.join(root, 'sub'), { recursive: true });
  await writeFile(path.join(root, 'a.txt'), 'alpha');
  await writeFile(path.join(dir, 'outside'), 'secret');
  await symlink(path.join(dir, 'outside'), path.join(root, 'sub', 'out'));
  await symlink(path.join(root, 'a.txt'), path.join(root, 'inside-link'));
  // Sparse: 1 GiB on paper, nothing on disk. Serving it must not read it into memory.
  const fh = await open(path.join(root, 'huge.img'), 'w');
  await fh.truncate(1024 ** 3);
  await fh.write(Buffer.from('END'), 0, 3, 1024 ** 3 - 3);
  await fh.close();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function content(src: TftpSource, p: string): Promise<string | undefined> {
  const r = await src.open(p, client);
  if (r.status !== 'ok') return undefined;
  const b = await r.read(0, r.size);
  r.close();
  return b.toString();
}

describe('fileRootSource', () => {
  it('serves files and symlinks that stay inside the root', async () => {
    const src = fileRootSource(root);
    expect(await content(src, 'a.txt')).toBe('alpha');
    expect(await content(src, 'inside-link')).toBe('alpha');
    expect(src.openFiles()).toBe(0);
  });

  it.each([
    ['../outside', 'refused'],
    ['/etc/passwd', 'refused'],
    ['..\\..\\x', 'refused'],
    ['sub/out', 'refused'],
    ['sub/./a', 'refused'],
    ['a\0b', 'refused'],
    ['sub', 'refused'],
    ['nope', 'not-found'],
    ['sub/nope/deeper', 'not-found'],
  ])('%j is %s', async (p, status) => {
    const r = await fileRootSource(root).open(p, client);
    expect(r.status).toBe(status);
  });

  it('a missing root is "not found" with the reason, not an exception', async () => {
    const r = await fileRootSource(path.join(dir, 'no-such-root')).open('ipxe.efi', client);
    expect(r).toMatchObject({ status: 'not-found', reason: expect.stringContaining('no-such-root') });
  });

  it('a 1 GiB file: size from fstat, positional reads, memory stays flat', async () => {
    const src = fileRootSource(root, { chunkBytes: 64 * 1024, chunksPerFile: 4 });
    const before = process.memoryUsage().rss;
    const r = await src.open('huge.img', client);
    expect(r.status).toBe('ok');
    if (r.status !== 'ok') return;
    expect(r.size).toBe(1024 ** 3);
    expect((await r.read(r.size - 3, 100)).toString()).toBe('END');
    // Walk 64 MiB through the cache: only a few chunks are ever held.
    for (let pos = 0; pos < 64 * 1024 * 1024; pos += 1468 * 64) await r.read(pos, 1468 * 64);
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
    r.close();
    expect(src.openFiles()).toBe(0);
  });

  it('reads spanning chunk boundaries and past the end are exact', async () => {
    const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));
    await writeFile(path.join(root, 'pattern.bin'), data);
    const src = fileRootSource(root, { chunkBytes: 1000, chunksPerFile: 2 });
    const r = await src.open('pattern.bin', client);
    if (r.status !== 'ok') throw new Error('not ok');
    for (const [pos, len] of [
      [0, 10_000],
      [999, 2],
      [1500, 3000],
      [9_990, 100],
      [10_000, 5],
    ]) {
      expect(await r.read(pos, len)).toEqual(data.subarray(pos, Math.min(10_000, pos + len)));
    }
    r.close();
  });

  it('a rewritten file gets a fresh handle, not stale cached bytes', async () => {
    const src = fileRootSource(root);
    await writeFile(path.join(root, 'changing'), 'one');
    const first = await src.open('changing', client);
    await writeFile(path.join(root, 'changing'), 'two!');
    expect(await content(src, 'changing')).toBe('two!');
    if (first.status === 'ok') first.close();
    expect(src.openFiles()).toBe(0);
  });
});

describe('bufferSource, functionSource, chainSources', () => {
  it('first source that has the file wins; a refusal beats "not found"', async () => {
    const chain = chainSources([
      bufferSource({ 'boot.ipxe': 'from buffer' }),
      functionSource((p, c) => (p.startsWith('m/') ? `machine ${p.slice(2)} at ${c.address}` : undefined)),
      fileRootSource(root),
    ]);
    expect(await content(chain, 'boot.ipxe')).toBe('from buffer');
    expect(await content(chain, 'm/52-54-00-00-00-01')).toBe('machine 52-54-00-00-00-01 at 192.0.2.10');
    expect(await content(chain, 'a.txt')).toBe('alpha');
    expect((await chain.open('../outside', client)).status).toBe('refused');
    expect((await chain.open('missing', client)).status).toBe('not-found');
  });
});
