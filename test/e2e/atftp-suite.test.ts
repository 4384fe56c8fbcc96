/**
 * The checks of atftp's own conformance script (test/test.sh in the atftp 0.8 sources, which its maintainers run
 * against atftpd), run with Debian's `atftp` client against the Plinth daemon as an operator starts it: one
 * directory served and accepting uploads, on loopback with a high port. Server-specific parts of that script
 * (PCRE name mapping, multicast/MTFTP, atftpd's own log lines) have no Plinth counterpart and are left out.
 *
 * What it holds Plinth to, beyond "the bytes match":
 * - exact packet counts in the client's trace for windowed transfers: one spurious retransmission fails them;
 * - invalid option values (blksize 7 or 65465, timeout 0 or 256) get ERROR 8 with the standard message;
 * - uploads replace an existing file;
 * - 200 simultaneous clients see no retransmitted block (atftp prints one line per duplicate).
 *
 * Needs the Debian package atftp; the disk-full check needs root (a 500 KiB tmpfs).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, spawnPlinth, stopChild, waitHttp } from '../helpers/proc.js';

const SIZES: Record<string, number> = {
  '511': 511,
  '512': 512,
  '2K': 2048,
  '50K': 50 * 1024,
  '128K': 128 * 1024,
  '1M': 1024 * 1024,
  '10M': 10 * 1024 * 1024,
  '100M': 100 * 1024 * 1024,
};
const WRITE = 'write.bin';
const NEGOTIATION_FAILED = '<Failure to negotiate RFC2347 options>';

let dir: string;
let work: string;
let port: number;
let daemon: ReturnType<typeof spawnPlinth>;

async function udpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const p = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

async function sha256(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  return h.digest('hex');
}

type Run = { code: number; stderr: string };
function atftp(args: string[], timeoutMs = 180_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      'atftp',
      [...args, '127.0.0.1', String(port)],
      { timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' },
      (err, _stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stderr });
      },
    );
  });
}
const opts = (o: string[]) => o.flatMap((x) => ['--option', x]);

/**
 * The packet arithmetic of atftp's check_trace: with blocks of bsize and windows of wsize, a file of tsize bytes
 * is exactly tsize/bsize + 1 DATA packets and tsize/(bsize*wsize) + 1 ACKs (plus the client's ACK of the OACK on
 * a read). Any retransmission shows up as an extra packet.
 */
function checkTrace(trace: string, fileSize: number): { data: number; acks: number; want: [number, number] } {
  const oack = trace.split('\n').find((l) => l.includes('OACK')) ?? '';
  const num = (k: string) => Number(new RegExp(`${k}: (\\d+)`).exec(oack)?.[1] ?? Number.NaN);
  const tsize = Number.isNaN(num('tsize')) ? fileSize : num('tsize');
  const wsize = Number.isNaN(num('windowsize')) ? 1 : num('windowsize');
  const bsize = Number.isNaN(num('blksize')) ? 512 : num('blksize');
  const lines = trace.split('\n');
  const data = lines.filter((l) => l.includes('DATA <block:')).length;
  const acks = lines.filter((l) => l.includes('ACK <block:') && !l.includes('OACK')).length;
  const ackOfOack = lines.filter((l) => l.includes('sent ACK <block: 0>')).length;
  return {
    data,
    acks,
    want: [Math.floor(tsize / bsize) + 1, Math.floor(tsize / (bsize * wsize)) + 1 + ackOfOack],
  };
}

async function getPut(name: string, o: string[] = [], trace = false): Promise<void> {
  const src = path.join(dir, name);
  const out = path.join(work, 'out.bin');
  const size = (await stat(src)).size;
  const extra = [...opts(o), ...(trace ? ['--trace'] : [])];

  const g = await atftp([...extra, '--get', '--remote-file', name, '--local-file', out]);
  expect(g.code, `get ${name} ${o.join(',')}: ${g.stderr.slice(-500)}`).toBe(0);
  if (trace) {
    const t = checkTrace(g.stderr, size);
    expect([t.data, t.acks], `get ${name} ${o.join(',')}: DATA/ACK counts`).toEqual(t.want);
  }
  expect(await sha256(out)).toBe(await sha256(src));

  const p = await atftp([...extra, '--put', '--remote-file', WRITE, '--local-file', src]);
  expect(p.code, `put ${name} ${o.join(',')}: ${p.stderr.slice(-500)}`).toBe(0);
  if (trace) {
    const t = checkTrace(p.stderr, size);
    expect([t.data, t.acks], `put ${name} ${o.join(',')}: DATA/ACK counts`).toEqual(t.want);
  }
  // The upload replaced the previous write.bin (atftp's script never removes it between puts).
  expect(await sha256(path.join(dir, WRITE))).toBe(await sha256(src));
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'plinth-atftp-'));
  dir = path.join(work, 'root');
  await mkdir(dir);
  await writeFile(path.join(dir, '0.bin'), '');
  for (const [name, size] of Object.entries(SIZES)) {
    const fh = await open(path.join(dir, `${name}.bin`), 'w');
    for (let off = 0; off < size; off += 1 << 20) await fh.write(randomBytes(Math.min(1 << 20, size - off)));
    await fh.close();
  }
  port = await udpPort();
  const httpPort = await freePort();
  daemon = spawnPlinth([
    '--data-dir',
    path.join(work, 'var'),
    '--no-dhcp',
    '--http-address',
    '127.0.0.1',
    '--http-port',
    String(httpPort),
    '--tftp-address',
    '127.0.0.1',
    '--tftp-port',
    String(port),
    '--assets-dir',
    dir,
    '--tftp-upload-dir',
    dir,
  ]);
  await waitHttp(httpPort, 60_000);
});

afterAll(async () => {
  await stopChild(daemon);
  if (work) await rm(work, { recursive: true, force: true });
});

describe('atftp conformance script against Plinth', () => {
  it('gets and puts every size with standard options', async () => {
    for (const name of ['0', ...Object.keys(SIZES)]) await getPut(`${name}.bin`);
  });

  it('gets and puts with block sizes 8 to 65464', async () => {
    await getPut('50K.bin', ['blksize 8']);
    await getPut('50K.bin', ['blksize 256']);
    await getPut('100M.bin', ['blksize 1428']);
    for (const b of [1533, 16000, 40000, 65464]) await getPut('1M.bin', [`blksize ${b}`]);
  });

  it('windowed transfers take exactly the packets the arithmetic says (no retransmission)', async () => {
    await getPut('2K.bin', ['windowsize 1', 'tsize 0', 'blksize 1024'], true);
    await getPut('2K.bin', ['windowsize 2', 'tsize 0', 'blksize 512'], true);
    await getPut('2K.bin', ['windowsize 4', 'tsize 0', 'blksize 256'], true);
    await getPut('128K.bin', ['windowsize 8', 'tsize 0', 'blksize 1024'], true);
    await getPut('128K.bin', ['windowsize 16', 'tsize 0', 'blksize 512'], true);
    await getPut('100M.bin', ['windowsize 32', 'tsize 0', 'blksize 1428'], true);
    await getPut('1M.bin', ['windowsize 5', 'tsize 0', 'blksize 1428'], true);
  });

  it('block numbers wrap past 65535 (1 MiB at blksize 8)', async () => {
    await getPut('1M.bin', ['blksize 8'], true);
  });

  it('a missing file is "File not found"', async () => {
    const r = await atftp(['--trace', '--get', '-r', 'thisfiledoesntexist', '-l', '/dev/null']);
    expect(r.stderr).toContain('<File not found>');
  });

  it('blksize and timeout outside their RFC ranges are refused with ERROR 8', async () => {
    for (const o of ['blksize 7', 'blksize 65465', 'timeout 0', 'timeout 256']) {
      const r = await atftp([...opts([o]), '--trace', '--get', '-r', '2K.bin', '-l', '/dev/null']);
      expect(r.stderr, o).toContain(NEGOTIATION_FAILED);
      expect(r.code, o).not.toBe(0);
    }
  });

  it('tsize is the file size', async () => {
    const r = await atftp([...opts(['tsize']), '--trace', '--get', '-r', '2K.bin', '-l', '/dev/null']);
    expect(/OACK <tsize: (\d+)/.exec(r.stderr)?.[1]).toBe('2048');
  });

  it('200 simultaneous clients: all complete, none sees a retransmitted block', async () => {
    const n = 200;
    const outs: Promise<string>[] = [];
    for (let i = 0; i < n; i++) {
      outs.push(
        new Promise((resolve) => {
          const c: ChildProcess = spawn(
            'atftp',
            ['--get', '--remote-file', '1M.bin', '--local-file', '/dev/null', '127.0.0.1', String(port)],
            { stdio: ['ignore', 'ignore', 'pipe'] },
          );
          let err = '';
          c.stderr!.on('data', (b) => {
            err += b;
          });
          const t = setTimeout(() => c.kill('SIGKILL'), 90_000);
          c.on('exit', (code) => {
            clearTimeout(t);
            resolve(code === 0 ? err : `${err}exit ${code}\n`);
          });
        }),
      );
    }
    const lines = (await Promise.all(outs))
      .join('')
      .split('\n')
      .filter((l) => l && !l.includes('timeout: retrying'));
    expect(lines.slice(0, 20)).toEqual([]);
  });

  it.runIf(process.getuid?.() === 0)('an upload that fills the disk fails on the client', async () => {
    const small = path.join(dir, 'small_fs');
    await mkdir(small);
    execFileSync('mount', ['-t', 'tmpfs', 'shm', small, '-o', 'size=500k']);
    try {
      const r = await atftp([
        '--put',
        '--local-file',
        path.join(dir, '1M.bin'),
        '--remote-file',
        'small_fs/fillup.bin',
      ]);
      expect(r.code).not.toBe(0);
      // Nothing half-written is left under the real name (the upload goes to a temporary file first).
      expect(await readFile(path.join(small, 'fillup.bin')).catch(() => undefined)).toBeUndefined();
    } finally {
      execFileSync('umount', [small]);
      await rm(small, { recursive: true, force: true });
    }
  });
});
