/**
 * Plinth's TFTP server against real clients (tftp-hpa `tftp`, `atftp`, `curl tftp://`) across a veth pair between two
 * network namespaces made here (10.99.4.0/24, nothing routed out). Needs root and the Debian packages iproute2,
 * tftp-hpa, atftp, curl, nftables, util-linux.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetns, deleteNetns, type Netns, runIn, startServer } from './tftp-netns.js';

const MiB = 1024 * 1024;
const repo = path.resolve(import.meta.dirname, '../..');
let ns: Netns;
let work: string;
let root: string;
let out: string;
let server: Awaited<ReturnType<typeof startServer>>;
const sums = new Map<string, string>();
let seq = 0;

async function sha256File(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(p)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Deterministic pseudo-random content, written in 1 MiB pieces (the 100 MiB file never sits in memory). */
async function makeFile(name: string, size: number): Promise<void> {
  const fh = await open(path.join(root, name), 'w');
  const piece = Buffer.alloc(Math.min(size, MiB) || 1);
  let x = size ^ 0x9e3779b9;
  const h = createHash('sha256');
  for (let off = 0; off < size; off += piece.length) {
    for (let i = 0; i < piece.length; i++) {
      x = (Math.imul(x, 1103515245) + 12345) | 0;
      piece[i] = x >>> 24;
    }
    const n = Math.min(piece.length, size - off);
    await fh.write(piece, 0, n, off);
    h.update(piece.subarray(0, n));
  }
  await fh.close();
  sums.set(name, h.digest('hex'));
}

type Client = 'tftp-hpa' | 'atftp' | 'curl';

function clientCmd(
  client: Client,
  file: string,
  dest: string,
  opts: { blksize?: number; windowsize?: number } = {},
): string[] {
  switch (client) {
    case 'tftp-hpa':
      // tftp-hpa 5.2 cannot send options: plain RFC 1350, blksize 512.
      return ['tftp', '-m', 'octet', ns.srvIp, '-c', 'get', file, dest];
    case 'atftp': {
      const o: string[] = ['--option', 'tsize 0'];
      if (opts.blksize) o.push('--option', `blksize ${opts.blksize}`);
      if (opts.windowsize) o.push('--option', `windowsize ${opts.windowsize}`);
      return ['atftp', ...o, '-g', '-r', file, '-l', dest, ns.srvIp, '69'];
    }
    case 'curl':
      return [
        'curl',
        '-sS',
        '--max-time',
        '300',
        // Without it curl resolves "../" in the URL itself and never sends the traversal attempt.
        '--path-as-is',
        '-o',
        dest,
        ...(opts.blksize ? ['--tftp-blksize', String(opts.blksize)] : []),
        `tftp://${ns.srvIp}/${file}`,
      ];
  }
}

async function fetchAndCheck(client: Client, file: string, opts: { blksize?: number; windowsize?: number } = {}) {
  const dest = path.join(out, `${client}-${seq++}-${path.basename(file)}`);
  const r = await runIn(ns.cli, clientCmd(client, file, dest, opts), { limitMs: 300_000 });
  expect(r.code, `${client} ${file}: ${r.stderr}${r.stdout}`).toBe(0);
  expect(await sha256File(dest)).toBe(sums.get(file));
  await rm(dest, { force: true });
  return r;
}

const isRoot = process.getuid?.() === 0;

describe.runIf(isRoot)('TFTP against real peers in namespaces', () => {
  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'plinth-e2e-tftp-'));
    await chmod(work, 0o755);
    root = path.join(work, 'root');
    out = path.join(work, 'out');
    await mkdir(root);
    await mkdir(out);
    const sizes: Record<string, number> = {
      empty: 0,
      f511: 511,
      f512: 512,
      f513: 513,
      n512: 512 * 100,
      n1468: 1468 * 50,
      // Under loss every dropped block costs a retransmission timeout (200 ms floor): sizes kept small for CI time.
      lossy: 1 * MiB,
      lossy10: 10 * MiB,
      // curl asks the RFC 2349 timeout option at (--max-time / 50), at least 5 s, and Plinth honours it as the
      // client's fixed retransmission interval (as tftpd-hpa does): every lost block costs curl 5-6 s. 1 MiB is 715
      // blocks, about 36 losses at 5%, about 216 s on average and over curl's 300 s often enough to fail CI.
      curlLossy: 128 * 1024,
      f30m: 30 * MiB,
      f40m: 40 * MiB,
      f100m: 100 * MiB,
    };
    for (const [name, size] of Object.entries(sizes)) await makeFile(name, size);
    await writeFile(path.join(work, 'secret'), 'outside the root\n');
    await symlink(path.join(work, 'secret'), path.join(root, 'link-out'));
    ns = createNetns('plinth-tftp', 4);
    server = await startServer(
      ns.srv,
      [
        process.execPath,
        '--import',
        'tsx',
        path.join(repo, 'test/e2e/tftp-run.ts'),
        '--root',
        root,
        '--address',
        ns.srvIp,
        '--port',
        '69',
        '--log-level',
        'info',
      ],
      (o) => o.includes('READY 69'),
      { cwd: repo },
    );
  });

  afterAll(async () => {
    await server?.stop();
    if (ns) deleteNetns(ns);
    if (work) await rm(work, { recursive: true, force: true });
  });

  describe('sizes and options', () => {
    for (const file of ['empty', 'f511', 'f512', 'f513', 'n512']) {
      it(`tftp-hpa gets ${file}`, () => fetchAndCheck('tftp-hpa', file));
    }
    for (const file of ['empty', 'f511', 'f512', 'f513', 'n1468']) {
      it(`atftp gets ${file} (blksize 1468, tsize)`, () => fetchAndCheck('atftp', file, { blksize: 1468 }));
      it(`atftp gets ${file} (blksize 1468, tsize, windowsize 16)`, () =>
        fetchAndCheck('atftp', file, { blksize: 1468, windowsize: 16 }));
    }
    // curl exits 71 on a 0-byte TFTP file even against tftpd-hpa (lab README): the empty file is covered above.
    for (const file of ['f511', 'f512', 'f513', 'n512']) it(`curl gets ${file}`, () => fetchAndCheck('curl', file));
    for (const file of ['f511', 'f512', 'f513', 'n1468']) {
      it(`curl gets ${file} (blksize 1468)`, () => fetchAndCheck('curl', file, { blksize: 1468 }));
    }
  });

  describe('large files and block-number rollover', () => {
    it('tftp-hpa gets 40 MiB at blksize 512 (81920 blocks)', () => fetchAndCheck('tftp-hpa', 'f40m'));
    it('tftp-hpa gets 100 MiB at blksize 512 (204800 blocks)', () => fetchAndCheck('tftp-hpa', 'f100m'));
    it('atftp gets 40 MiB (blksize 1468)', () => fetchAndCheck('atftp', 'f40m', { blksize: 1468 }));
    it('atftp gets 100 MiB (blksize 1468, 71430 blocks, lock-step)', () =>
      fetchAndCheck('atftp', 'f100m', { blksize: 1468 }));
    it('atftp gets 100 MiB (blksize 1468, windowsize 16)', () =>
      fetchAndCheck('atftp', 'f100m', { blksize: 1468, windowsize: 16 }));
    it('curl gets 40 MiB (blksize 1468)', () => fetchAndCheck('curl', 'f40m', { blksize: 1468 }));
    it('curl gets 100 MiB (default blksize 512)', () => fetchAndCheck('curl', 'f100m'));
    it('curl gets 100 MiB (blksize 1468)', () => fetchAndCheck('curl', 'f100m', { blksize: 1468 }));
  });

  describe('traversal', () => {
    const attempts = ['../../etc/passwd', '/etc/passwd', '..\\..\\x', 'link-out', '../secret'];
    for (const name of attempts) {
      for (const client of ['tftp-hpa', 'atftp', 'curl'] as const) {
        it(`${client} is refused ${JSON.stringify(name)}`, async () => {
          const dest = path.join(out, `refused-${seq++}`);
          const r = await runIn(ns.cli, clientCmd(client, name, dest, { blksize: 1468 }), { limitMs: 30_000 });
          const size = await stat(dest).then(
            (s) => s.size,
            () => 0,
          );
          expect(size).toBe(0);
          // Whatever each client prints of our ERROR, it holds no path of ours.
          expect(r.stdout + r.stderr).not.toContain(work);
          if (client !== 'tftp-hpa') expect(r.code).not.toBe(0);
          await rm(dest, { force: true });
        });
      }
    }
    it('logged the refusals', () => {
      const refusals = server
        .output()
        .split('\n')
        .filter((l) => l.includes('tftp request refused'));
      expect(refusals.length).toBeGreaterThanOrEqual(attempts.length * 3);
      expect(refusals.filter((l) => !l.includes('"code":2'))).toEqual([]);
    });
  });

  describe('5% packet loss in the client namespace (nftables)', () => {
    beforeAll(async () => {
      for (const cmd of [
        ['nft', 'add', 'table', 'inet', 't'],
        ['nft', 'add', 'chain', 'inet', 't', 'c', '{ type filter hook input priority 0; }'],
        [
          'nft',
          'add',
          'rule',
          'inet',
          't',
          'c',
          'meta',
          'l4proto',
          'udp',
          'numgen',
          'random',
          'mod',
          '20',
          '==',
          '0',
          'drop',
        ],
      ]) {
        const r = await runIn(ns.cli, cmd, { limitMs: 10_000 });
        expect(r.code, r.stderr).toBe(0);
      }
    });
    afterAll(async () => {
      await runIn(ns.cli, ['nft', 'delete', 'table', 'inet', 't'], { limitMs: 10_000 });
    });
    it('tftp-hpa completes 1 MiB', () => fetchAndCheck('tftp-hpa', 'lossy'));
    it('atftp completes 1 MiB (blksize 1468)', () => fetchAndCheck('atftp', 'lossy', { blksize: 1468 }));
    it('atftp completes 1 MiB (blksize 1468, windowsize 16)', () =>
      fetchAndCheck('atftp', 'lossy', { blksize: 1468, windowsize: 16 }));
    it('curl completes 128 KiB (blksize 1468; curl asks a 6 s retransmission timeout)', () =>
      fetchAndCheck('curl', 'curlLossy', { blksize: 1468 }));
    it('atftp completes 10 MiB with windowsize 16', () =>
      fetchAndCheck('atftp', 'lossy10', { blksize: 1468, windowsize: 16 }));
  });

  it('32 clients at once download a 30 MiB file, all intact', async () => {
    const kinds: Array<[Client, { blksize?: number; windowsize?: number }]> = [
      ['atftp', { blksize: 1468, windowsize: 16 }],
      ['atftp', { blksize: 1468 }],
      ['curl', { blksize: 1468 }],
      ['tftp-hpa', {}],
    ];
    const started = Date.now();
    await Promise.all(Array.from({ length: 32 }, (_, i) => fetchAndCheck(kinds[i % 4][0], 'f30m', kinds[i % 4][1])));
    expect(Date.now() - started).toBeLessThan(300_000);
  });

  it('finished with every transfer logged and none leaked', async () => {
    const lines = server
      .output()
      .split('\n')
      .filter((l) => l.includes('"msg":"tftp transfer"'));
    expect(lines.length).toBeGreaterThan(60);
    for (const l of lines.slice(0, 5)) {
      const j = JSON.parse(l);
      expect(j).toHaveProperty('client');
      expect(j).toHaveProperty('durationMs');
      expect(j).toHaveProperty('bytes');
    }
    await server.stop();
    const stats = JSON.parse(server.output().split('STATS ')[1].split('\n')[0]);
    expect(stats.transfersStarted).toBe(stats.transfersCompleted + stats.transfersFailed + stats.sizeProbes);
    expect(stats.transfersFailed).toBe(0);
    expect(stats.malformed).toBe(0);
  });
});
