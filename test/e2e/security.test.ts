/**
 * Issue 11's end-to-end proof that no unauthenticated flood takes the daemon down (lab: security-netns.ts):
 *
 *   plinth-sec-srv: br0 10.97.0.1/24, Plinth from src/main.ts (DHCP, TFTP, HTTP; descriptor limit 20,000)
 *   plinth-sec-cli: eth0 10.97.0.2 (the attacker: floods, fuzz), eth1..eth3 (DHCP clients, MACs 52:54:00:97:00:0x)
 *   plinth-sec-obs: eth0 10.97.0.3 (the watchdog polling GET /api/v1/info every 200 ms, real tftp and curl)
 *
 * Each flood is one test against a freshly started daemon (same data dir: leases carry over), bounded in count
 * and time, with the watchdog and a descriptor count of the daemon (/proc/<pid>/fd every 200 ms) running through
 * it. Asserts: the daemon is alive, every /info answer came within 1 s and none failed, and a real client is
 * served afterwards. Figures go to the console and to $PLINTH_SEC_FIGURES (default <tmp>/plinth-sec-figures.json).
 * Needs root, iproute2, util-linux (prlimit), isc-dhcp-client, udhcpc, tftp-hpa, curl.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nsCurl } from '../../src/lab/api.js';
import {
  API_BASE,
  ATTACKER_IP,
  apiCert,
  BASE,
  CLI,
  CLIENT_MACS,
  createLab,
  type Daemon,
  deathNotes,
  deleteLab,
  fdCount,
  fdLimit,
  fdSampler,
  nofileHard,
  OBS,
  SERVER_IP,
  startDaemon,
  type Tool,
  tool,
  watchdog,
} from './security-netns.js';
import { runIn } from './tftp-netns.js';

const isRoot = process.getuid?.() === 0;
const TOKEN = `sec-e2e-${randomBytes(24).toString('hex')}`;
const FIGURES = process.env.PLINTH_SEC_FIGURES ?? path.join(tmpdir(), 'plinth-sec-figures.json');
const work = mkdtempSync(path.join(tmpdir(), 'plinth-sec-e2e-'));
const dataDir = path.join(work, 'data');
const assetsDir = path.join(work, 'assets');
const out = path.join(work, 'out');
const api = nsCurl(OBS, API_BASE, TOKEN, { cacert: apiCert(dataDir) });
const figures: Record<string, unknown> = {};
let daemon: Daemon | undefined;
let xSha = '';
let fetches = 0;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A clean daemon for each flood, so one flood's leftovers (held transfers, sockets) do not blur the next one. */
async function freshDaemon(): Promise<Daemon> {
  if (daemon?.alive()) await daemon.proc.stop();
  daemon = await startDaemon(dataDir, assetsDir, TOKEN);
  return daemon;
}

/** tftp-hpa from the observer fetches /x (RFC 1350, blksize 512); true when the bytes match. */
async function tftpFetch(): Promise<{ ok: boolean; detail: string }> {
  const dest = path.join(out, `tftp-${fetches++}`);
  const r = await runIn(OBS, ['tftp', '-m', 'octet', SERVER_IP, '-c', 'get', 'x', dest], { limitMs: 30_000 });
  let got = '';
  try {
    got = sha256(readFileSync(dest));
  } catch {
    // not written
  }
  return {
    ok: r.code === 0 && got === xSha,
    detail: `tftp exit ${r.code ?? r.signal} in ${Math.round(r.ms)} ms ${r.stderr}${r.stdout}`.trim(),
  };
}

/** curl from the observer fetches http://server/files/x; true when the bytes match. */
async function curlFetch(): Promise<{ ok: boolean; detail: string }> {
  const dest = path.join(out, `curl-${fetches++}`);
  const r = await runIn(OBS, ['curl', '-sS', '--max-time', '10', '-o', dest, `${BASE}/files/x`], { limitMs: 20_000 });
  let got = '';
  try {
    got = sha256(readFileSync(dest));
  } catch {
    // not written
  }
  return {
    ok: r.code === 0 && got === xSha,
    detail: `curl exit ${r.code ?? r.signal} in ${Math.round(r.ms)} ms ${r.stderr}`.trim(),
  };
}

/** udhcpc on eth<n> of the client namespace: five DISCOVERs one second apart; the address, or undefined. */
async function udhcpc(n: number): Promise<{ address?: string; detail: string }> {
  const r = await runIn(CLI, ['udhcpc', '-i', `eth${n}`, '-n', '-q', '-f', '-t', '5', '-T', '1', '-s', '/bin/true'], {
    limitMs: 30_000,
  });
  const o = r.stdout + r.stderr;
  return { address: /lease of ([\d.]+) obtained/.exec(o)?.[1], detail: o.trim().split('\n').slice(-4).join(' | ') };
}

/** dhclient (ISC) on eth<n>, once (-1); it daemonizes when bound and is killed by its PID file at once. */
async function dhclient(n: number): Promise<{ address?: string; detail: string }> {
  const pf = path.join(work, `dhclient-eth${n}.pid`);
  const r = await runIn(
    CLI,
    ['dhclient', '-4', '-v', '-1', '-sf', '/bin/true', '-lf', path.join(work, `eth${n}.leases`), '-pf', pf, `eth${n}`],
    { limitMs: 40_000 },
  );
  try {
    const pid = Number(readFileSync(pf, 'utf8').trim());
    if (pid > 1) process.kill(pid, 'SIGKILL');
  } catch {
    // never bound, not running
  }
  const o = r.stdout + r.stderr;
  return { address: /bound to ([\d.]+)/.exec(o)?.[1], detail: o.trim().split('\n').slice(-4).join(' | ') };
}

/** The daemon's own counters (GET /api/v1/info .stats), asked with a 5 s bound; undefined when it does not answer. */
async function infoStats(): Promise<unknown> {
  const r = await runIn(OBS, ['curl', '-sS', '--max-time', '5', `${BASE}/api/v1/info`], { limitMs: 10_000 });
  try {
    return JSON.parse(r.stdout).stats;
  } catch {
    return undefined;
  }
}

type Lease = { address: string; mac: string; state: string };
function leases(): Lease[] {
  const r = api.get('/api/v1/leases');
  return Array.isArray(r.body) ? (r.body as Lease[]) : [];
}

function flood(mode: string, args: string[], opts: { nofile?: number; limitMs: number }): Tool {
  return tool(CLI, 'security-flood.ts', [mode, '--target', SERVER_IP, ...args], opts);
}

/** Sums the workers' results: durations take the longest, counters add up (also inside nested objects). */
function merge(results: Record<string, any>[]): Record<string, any> {
  const add = (into: Record<string, any>, r: Record<string, any>) => {
    for (const [k, v] of Object.entries(r)) {
      if (typeof v === 'number') into[k] = /ms$/i.test(k) ? Math.max(into[k] ?? 0, v) : (into[k] ?? 0) + v;
      else if (v && typeof v === 'object') into[k] = add(into[k] ?? {}, v);
      else if (k === 'error') into.error = `${into.error ?? ''}${v}\n`;
      else into[k] = v;
    }
    return into;
  };
  return results.reduce((m, r) => add(m, r), { workers: results.length });
}

/**
 * A flood that needs one descriptor per request (RRQ sockets, TCP connections), split over enough worker
 * processes that each stays under the descriptor limit we may give it.
 */
function floodSplit(mode: string, total: number, perSecond: number, args: string[], limitMs: number) {
  const n = Math.max(2, Math.ceil(total / Math.max(1, nofileHard() - 500)));
  const share = (i: number) => String(Math.floor(total / n) + (i < total % n ? 1 : 0));
  const tools = Array.from({ length: n }, (_, i) =>
    flood(
      mode,
      ['--count', share(i), '--rate', String(Math.ceil(perSecond / n)), '--seed', String(1200 + i), ...args],
      {
        nofile: 1 << 20,
        limitMs,
      },
    ),
  );
  return {
    workers: n,
    sent: Promise.all(tools.map((t) => t.sent)).then((a) => a.reduce((x, y) => x + y, 0)),
    result: Promise.all(tools.map((t) => t.result)).then(merge),
  };
}

/**
 * Runs `body` (which starts a flood and returns its result) on a fresh daemon with the watchdog and the
 * descriptor sampler around it; records the figures and asserts what holds for every flood.
 */
async function underFlood(name: string, body: () => Promise<Record<string, any>>) {
  const d = await freshDaemon();
  const fdsBefore = fdSampler(d.pid).stop().last;
  const limit = fdLimit(d.pid);
  const fds = fdSampler(d.pid);
  const wd = watchdog(300_000);
  await wd.ready();
  const result = await body();
  await sleep(1000); // one more second of polls after the flood ends
  const w = await wd.stop();
  const f = fds.stop();
  const fig = {
    flood: result,
    statsAfter: await infoStats(),
    watchdog: {
      polls: w.polls,
      failed: w.failed,
      over1s: w.over1s,
      maxMs: w.maxMs,
      maxOkMs: w.maxOkMs,
      p50Ms: w.p50Ms,
      p99Ms: w.p99Ms,
    },
    firstFailures: (w.failures ?? []).slice(0, 3),
    fds: { before: fdsBefore, peak: f.peak, after: f.last, limit },
    daemon: d.exit(),
  };
  figures[name] = fig;
  console.log(`[security] ${name}: ${JSON.stringify(fig)}`);
  const why = d.alive() ? '' : `\n${deathNotes(d.proc.output())}`;
  if (!d.alive()) writeFileSync(`${FIGURES}.${name}.log`, d.proc.output());
  expect.soft(d.alive(), `${name}: the daemon ${d.exit()} (peak ${f.peak} descriptors)${why}`).toBe(true);
  expect.soft(w.polls ?? 0, `${name}: the watchdog ran (${JSON.stringify(w).slice(0, 300)})`).toBeGreaterThan(5);
  expect
    .soft(
      w.failed,
      `${name}: ${w.failed} of ${w.polls} GET /api/v1/info failed; first: ${JSON.stringify(fig.firstFailures)}`,
    )
    .toBe(0);
  expect
    .soft(
      w.maxMs,
      `${name}: slowest GET /api/v1/info (answered or failed) took ${w.maxMs} ms; answered: slowest ${w.maxOkMs} ms, ${w.over1s} over 1 s, p99 ${w.p99Ms} ms`,
    )
    .toBeLessThanOrEqual(1000);
  return fig;
}

describe.runIf(isRoot)('security: floods and fuzz against the whole daemon', () => {
  beforeAll(async () => {
    deleteLab();
    createLab();
    mkdirSync(assetsDir, { recursive: true });
    mkdirSync(out, { recursive: true });
    // 300 KiB of seeded bytes: ~600 TFTP blocks at 512, so a fetch is a real transfer, not one packet.
    const x = Buffer.alloc(300 * 1024);
    for (let i = 0, s = 97; i < x.length; i++) {
      s = (Math.imul(s, 1103515245) + 12345) | 0;
      x[i] = s >>> 24;
    }
    xSha = sha256(x);
    writeFileSync(path.join(work, 'x'), x);
    await freshDaemon();
    const sub = api.json('POST', '/api/v1/subnets', {
      name: 'sec',
      subnet: '10.97.0.0/24',
      activeStart: '10.97.0.10',
      activeEnd: '10.97.0.250',
      leaseTime: 600,
    });
    expect(sub.status, sub.text).toBe(201);
    const up = api.upload(path.join(work, 'x'), 'x');
    expect(up.status, up.text).toBeLessThan(300);
    for (const [name, mac] of [
      ['known-fuzz', CLIENT_MACS[1]!],
      ['known', CLIENT_MACS[2]!],
    ]) {
      const m = api.json('POST', '/api/v1/machines', { name, macs: [mac] });
      expect(m.status, m.text).toBe(201);
    }
    const t = await tftpFetch();
    expect(t.ok, `the lab serves TFTP before any flood: ${t.detail}`).toBe(true);
  });

  afterAll(async () => {
    await daemon?.proc.stop();
    deleteLab();
    writeFileSync(FIGURES, `${JSON.stringify(figures, null, 2)}\n`);
    console.log(`[security] figures written to ${FIGURES}`);
    rmSync(work, { recursive: true, force: true });
  });

  it('DHCP fuzz: 100,000 malformed packets to port 67, then dhclient gets a lease', async () => {
    await underFlood('dhcp-fuzz', async () => {
      const f = flood('dhcp-fuzz', ['--count', '100000', '--rate', '4000', '--max-ms', '60000', '--seed', '1101'], {
        limitMs: 90_000,
      });
      return f.result;
    });
    const sent = (figures['dhcp-fuzz'] as any).flood.sent;
    expect.soft(sent, `DHCP fuzz packets sent within 60 s`).toBeGreaterThanOrEqual(100_000);
    const c = await dhclient(2);
    expect
      .soft(c.address, `dhclient on eth2 (machine known-fuzz) after the DHCP fuzz: ${c.detail}`)
      .toMatch(/^10\.97\.0\./);
    const t = await tftpFetch();
    expect.soft(t.ok, `tftp after the DHCP fuzz: ${t.detail}`).toBe(true);
    const h = await curlFetch();
    expect.soft(h.ok, `curl /files/x after the DHCP fuzz: ${h.detail}`).toBe(true);
  });

  it('TFTP fuzz: 100,000 malformed packets to port 69, then tftp, curl and udhcpc are served', async () => {
    await underFlood('tftp-fuzz', async () => {
      const f = flood('tftp-fuzz', ['--count', '100000', '--rate', '4000', '--max-ms', '60000', '--seed', '1102'], {
        limitMs: 90_000,
      });
      return f.result;
    });
    const sent = (figures['tftp-fuzz'] as any).flood.sent;
    expect.soft(sent, `TFTP fuzz packets sent within 60 s`).toBeGreaterThanOrEqual(100_000);
    const t = await tftpFetch();
    expect.soft(t.ok, `tftp after the TFTP fuzz: ${t.detail}`).toBe(true);
    const h = await curlFetch();
    expect.soft(h.ok, `curl /files/x after the TFTP fuzz: ${h.detail}`).toBe(true);
    const c = await udhcpc(1);
    expect.soft(c.address ?? 'no lease', `udhcpc on eth1 after the TFTP fuzz: ${c.detail}`).toMatch(/^10\.97\.0\./);
  });

  it('TFTP RRQ flood: 18,000 never-acknowledged RRQs with timeout=255; a real tftp transfer works during it', async () => {
    let during = { ok: false, detail: 'not run' };
    let heldLate = -1;
    const fig = await underFlood('rrq-flood', async () => {
      const f = floodSplit('rrq', 18_000, 1000, ['--max-ms', '45000', '--hold-ms', '40000'], 120_000);
      await f.sent;
      const lastRrq = Date.now();
      // Past the 30 s mark, where the issue saw the daemon die (its interface rescan on an exhausted table).
      await sleep(31_000);
      during = await tftpFetch();
      // Still inside the hold (the flood's sockets open, so no ICMP tells the daemon they are gone).
      await sleep(Math.max(0, lastRrq + 35_000 - Date.now()));
      heldLate = fdCount(daemon!.pid);
      return f.result;
    });
    Object.assign(fig, { tftpDuring: during, fdsHeld35sAfterLastRrq: heldLate });
    // RFC 2349 lets a client ask 255 s per retransmission; the issue wants transfers capped per client and in
    // total, and an unanswered first OACK/DATA given up quickly, so a flood cannot pin the descriptor table.
    expect
      .soft(fig.fds.peak, `descriptors held at peak under 18,000 unacknowledged RRQs (limit ${fig.fds.limit})`)
      .toBeLessThan(Number(fig.fds.limit) / 2);
    expect
      .soft(heldLate, `descriptors still held 35 s after the last RRQ, none acknowledged (${fig.fds.before} before)`)
      .toBeLessThan(fig.fds.before + 1000);
    const rrqs = (figures['rrq-flood'] as any).flood.sent;
    expect.soft(rrqs, 'RRQs sent within 45 s').toBe(18_000);
    const after = await tftpFetch();
    (figures['rrq-flood'] as any).tftpAfter = after;
    expect
      .soft(during.ok || after.ok, `tftp during (${during.detail}) or right after (${after.detail}) the RRQ flood`)
      .toBe(true);
    const h = await curlFetch();
    expect.soft(h.ok, `curl /files/x after the RRQ flood: ${h.detail}`).toBe(true);
  });

  it('HTTP slowloris: 20,000 half-open requests held 35 s; /info answers throughout and curl works after', async () => {
    let during = { ok: false, detail: 'not run' };
    await underFlood('slowloris', async () => {
      const f = floodSplit(
        'slowloris',
        20_000,
        0,
        ['--concurrency', '250', '--max-ms', '60000', '--hold-ms', '35000', '--port', '8091'],
        150_000,
      );
      await f.sent;
      await sleep(31_000);
      during = await curlFetch();
      return f.result;
    });
    (figures.slowloris as any).curlDuring = during;
    const s = (figures.slowloris as any).flood;
    expect.soft(s.attempted, `slowloris connections attempted within 60 s (${JSON.stringify(s)})`).toBe(20_000);
    const h = await curlFetch();
    (figures.slowloris as any).curlAfter = h;
    expect.soft(h.ok, `curl /files/x after the slowloris (during it: ${during.detail}): ${h.detail}`).toBe(true);
  });

  it('DHCP DISCOVER flood: 400 random MACs on a /24 pool; a known machine gets a lease right away; no lease lost', async () => {
    await freshDaemon();
    const early = await udhcpc(1);
    expect(early.address ?? 'no lease', `udhcpc on eth1 before the flood: ${early.detail}`).toMatch(/^10\.97\.0\./);
    const before = leases().filter((l) => l.state === 'bound');
    let known: { address?: string; detail: string } = { detail: 'not run' };
    await underFlood('discover-flood', async () => {
      const f = flood('discover', ['--count', '400', '--rate', '400', '--max-ms', '10000', '--seed', '1105'], {
        limitMs: 30_000,
      });
      const r = await f.result;
      known = await udhcpc(3);
      return r;
    });
    const after = leases();
    const lost = before.filter(
      (b) => !after.some((a) => a.address === b.address && a.mac === b.mac && a.state === 'bound'),
    );
    const held = after.filter((l) => l.state === 'bound' || l.state === 'offered');
    const twice = held.filter((l, i) => held.findIndex((o) => o.address === l.address) !== i);
    Object.assign(figures['discover-flood'] as object, {
      knownMachine: known,
      leasesBoundBefore: before.length,
      lostLeases: lost.length,
      boundAfter: after.filter((l) => l.state === 'bound').length,
      attacker: ATTACKER_IP,
    });
    console.log(`[security] discover-flood leases: ${JSON.stringify(figures['discover-flood'])}`);
    expect.soft((figures['discover-flood'] as any).flood.sent, 'DISCOVERs sent').toBe(400);
    expect
      .soft(known.address ?? 'no lease', `udhcpc for the known machine (eth3) right after the flood: ${known.detail}`)
      .toMatch(/^10\.97\.0\./);
    expect.soft(lost, 'leases ACKed before the flood and gone (or moved) after it').toEqual([]);
    expect.soft(twice, 'addresses held by two leases').toEqual([]);
  });
});
