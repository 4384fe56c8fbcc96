/**
 * RFC 2349 timeout and RFC 7440 windowsize against a real client: Debian's `atftp` (0.8) on loopback, talking to the
 * server in this process on an unprivileged port (no root, no namespaces). The timeout is checked by stopping the
 * client (SIGSTOP) in the middle of a transfer and timing the server's retransmissions from its counters: with
 * `timeout 1` asked they come 1 s apart, without it on the adaptive schedule (200 ms doubling). Skipped where
 * atftp is not installed.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTftpServer, type TftpServer } from '../../src/tftp/server.js';
import { fileRootSource } from '../../src/tftp/source.js';

function hasAtftp(): boolean {
  try {
    execFileSync('atftp', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const atftpMissing = !hasAtftp();

let dir: string;
let root: string;
let up: string;
const servers: TftpServer[] = [];
const children: ChildProcess[] = [];
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'plinth-tftp-peers-'));
  root = path.join(dir, 'root');
  up = path.join(dir, 'up');
  await mkdir(root);
  await mkdir(up);
  await writeFile(path.join(root, 'small.bin'), randomBytes(300_000));
  // Lock-step at 512 bytes a block this takes long enough (12,000 round trips) to stop the client in the middle of it.
  await writeFile(path.join(root, 'big.bin'), randomBytes(6 << 20));
});

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      process.kill(c.pid, 'SIGCONT');
      c.kill('SIGKILL');
    }
  }
  await Promise.all(servers.splice(0).map((s) => s.close()));
  for (const f of await readdir(up)) await rm(path.join(up, f), { force: true });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

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

async function server(logger?: pino.Logger, nativeSockets = true) {
  const s = await startTftpServer({
    nativeSockets,
    source: fileRootSource(root),
    address: '127.0.0.1',
    port: 0,
    uploadDir: up,
    logger,
  });
  servers.push(s);
  return s;
}

/** Runs atftp against the server; resolves with its exit code and trace (stderr). */
function atftp(
  port: number,
  args: string[],
): { child: ChildProcess; done: Promise<{ code: number | null; trace: string }> } {
  const child = spawn('atftp', [...args, '127.0.0.1', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let trace = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    trace += d;
  });
  const done = new Promise<{ code: number | null; trace: string }>((resolve) => {
    child.on('close', (code) => resolve({ code, trace }));
  });
  return { child, done };
}
const options = (o: string[]) => o.flatMap((x) => ['--option', x]);

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(2);
  return cond();
}

/**
 * Stops the client once the transfer is under way, records when the server's retransmission counter moves over
 * `watchMs`, lets the client go on, and returns the gaps between consecutive retransmissions (ms).
 */
async function stallAndTime(s: TftpServer, run: ReturnType<typeof atftp>, started: () => boolean, watchMs: number) {
  expect(await until(started, 20_000)).toBe(true);
  process.kill(run.child.pid!, 'SIGSTOP');
  const at: number[] = [];
  let seen = s.stats.retransmits;
  const end = performance.now() + watchMs;
  while (performance.now() < end) {
    if (s.stats.retransmits !== seen) {
      for (let k = seen; k < s.stats.retransmits; k++) at.push(performance.now());
      seen = s.stats.retransmits;
    }
    await sleep(2);
  }
  process.kill(run.child.pid!, 'SIGCONT');
  return at.slice(1).map((t, i) => Math.round(t - at[i]));
}

describe.skipIf(atftpMissing)('atftp (real client) on loopback', () => {
  // Native transfer sockets (when built) and the dgram fallback: the same packets.
  it.each([true, false])(
    'RFC 7440 on WRQ: atftp puts with windowsize 8, one ACK per 8 blocks, the right bytes (native %s)',
    async (native) => {
      const { logger, lines } = captureLogger();
      const s = await server(logger, native);
      const src = path.join(root, 'small.bin');
      const run = atftp(s.port, [
        ...options(['windowsize 8', 'blksize 1024']),
        '--trace',
        '--put',
        '-r',
        'w.bin',
        '-l',
        src,
      ]);
      const { code, trace } = await run.done;
      expect(code, trace.slice(-500)).toBe(0);
      expect(trace).toMatch(/received OACK <[^>]*windowsize: 8/);
      const blocks = Math.floor(300_000 / 1024) + 1;
      const windows = Math.ceil(blocks / 8);
      const count = (re: RegExp) => trace.split('\n').filter((l) => re.test(l)).length;
      expect(count(/sent .*DATA <block:/)).toBe(blocks);
      expect(count(/received ACK <block:/)).toBe(windows);
      expect(await until(() => s.stats.transfersCompleted === 1, 2000)).toBe(true);
      expect(sha(await readFile(path.join(up, 'w.bin')))).toBe(sha(await readFile(src)));
      // The server's side: the OACK and one ACK per window, nothing resent, and its log line says windowsize 8.
      expect(s.stats).toMatchObject({ packetsSent: 1 + windows, retransmits: 0, bytesReceived: 300_000 });
      const line = lines.find((l) => l.msg === 'tftp transfer' && l.op === 'write');
      expect(line).toMatchObject({ result: 'ok', options: { blksize: 1024, windowsize: 8 } });
    },
  );

  it('RFC 2349 on RRQ: with timeout 1 asked, a stalled atftp gets its DATA again every 1 s; without it, 200 ms doubling', async () => {
    for (const asked of [true, false]) {
      const s = await server();
      const out = path.join(dir, `got-${asked}.bin`);
      const run = atftp(s.port, [...options(asked ? ['timeout 1'] : []), '--get', '-r', 'big.bin', '-l', out]);
      const gaps = await stallAndTime(s, run, () => s.stats.bytesSent > 256 << 10, asked ? 3600 : 2500);
      const { code } = await run.done;
      expect(code).toBe(0);
      expect(sha(await readFile(out))).toBe(sha(await readFile(path.join(root, 'big.bin'))));
      if (asked) {
        expect(gaps.length, `gaps ${gaps}`).toBeGreaterThanOrEqual(2);
        for (const g of gaps) expect(g, `gaps ${gaps}`).toBeGreaterThanOrEqual(950);
        for (const g of gaps) expect(g, `gaps ${gaps}`).toBeLessThan(1250);
      } else {
        // 200 ms floor doubling to the 1 s server timeout: 400, 800, 1000, ...
        expect(gaps.length, `gaps ${gaps}`).toBeGreaterThanOrEqual(2);
        expect(gaps[0], `gaps ${gaps}`).toBeLessThan(700);
      }
      await Promise.all(servers.splice(0).map((x) => x.close()));
    }
  });

  it('RFC 2349 on WRQ: with timeout 1 asked, a stalled atftp put gets its ACK again every 1 s, then completes', async () => {
    const s = await server();
    const src = path.join(root, 'big.bin');
    const run = atftp(s.port, [...options(['timeout 1']), '--put', '-r', 'stalled.bin', '-l', src]);
    const gaps = await stallAndTime(s, run, () => s.stats.bytesReceived > 256 << 10, 3600);
    const { code } = await run.done;
    expect(code).toBe(0);
    expect(gaps.length, `gaps ${gaps}`).toBeGreaterThanOrEqual(2);
    for (const g of gaps) expect(g, `gaps ${gaps}`).toBeGreaterThanOrEqual(950);
    for (const g of gaps) expect(g, `gaps ${gaps}`).toBeLessThan(1250);
    expect(await until(() => s.stats.transfersCompleted === 1, 2000)).toBe(true);
    expect(sha(await readFile(path.join(up, 'stalled.bin')))).toBe(sha(await readFile(src)));
  });
});
