/**
 * Flood and fuzz generators for the security e2e suite, run inside a client namespace:
 *
 *   ip netns exec NS prlimit --nofile=N node --import tsx test/e2e/security-flood.ts MODE --target IP [options]
 *
 * MODE: dhcp-fuzz | tftp-fuzz (malformed packets, security-fuzz.ts), rrq (TFTP read requests that are never
 * acknowledged, one source port each), slowloris (half-open HTTP requests), discover (DHCPDISCOVERs from random
 * MACs, never followed by a REQUEST). Every loop is bounded by --count AND --max-ms; sending is paced at --rate
 * per second. Prints "SENT <n>" when the sending phase ends (the test may probe during --hold-ms), then one line
 * "RESULT <json>" and exits.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { dhcpRequest, fuzzDhcp, fuzzTftp, randomMac, rng, tftpRequest } from './security-fuzz.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: 'string' },
    port: { type: 'string' },
    count: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '1000' },
    'max-ms': { type: 'string', default: '60000' },
    'hold-ms': { type: 'string', default: '0' },
    seed: { type: 'string', default: '11' },
    sockets: { type: 'string', default: '32' },
    file: { type: 'string', default: 'x' },
    concurrency: { type: 'string', default: '500' },
  },
});
const mode = positionals[0];
const target = values.target!;
const count = Number(values.count);
const rate = Number(values.rate);
const maxMs = Number(values['max-ms']);
const holdMs = Number(values['hold-ms']);
const r = rng(Number(values.seed));
const started = Date.now();
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

type Counters = Record<string, number>;
const errors: Counters = {};
const countError = (err: unknown) => {
  const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  errors[code] = (errors[code] ?? 0) + 1;
};

/**
 * Calls `send(i)` for i in [0, count) at `rate` per second, in 10 ms ticks; stops at `count` or `maxMs`,
 * whichever comes first. At most `inflight` sends may be pending (so a stalled peer cannot queue memory).
 */
async function paced(send: (i: number) => Promise<void>, inflight = 2000): Promise<{ sent: number; ms: number }> {
  let sent = 0;
  let pending = 0;
  while (sent < count && Date.now() - started < maxMs) {
    const due = Math.min(count, Math.floor(((Date.now() - started) * rate) / 1000) + 1);
    while (sent < due && pending < inflight) {
      pending++;
      send(sent++)
        .catch(countError)
        .finally(() => pending--);
    }
    await sleep(10);
  }
  for (let k = 0; k < 500 && pending > 0; k++) await sleep(10);
  return { sent, ms: Date.now() - started };
}

function udpSocket(port = 0): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(port, () => {
      s.off('error', reject);
      s.on('error', countError);
      s.setBroadcast(true);
      resolve(s);
    });
  });
}

const sendTo = (s: dgram.Socket, p: Buffer, port: number) =>
  new Promise<void>((resolve, reject) => s.send(p, port, target, (err) => (err ? reject(err) : resolve())));

/** Malformed packets from `sockets` source ports (replies are counted, never answered). */
async function fuzz(port: number, make: () => Buffer) {
  const socks = await Promise.all(Array.from({ length: Number(values.sockets) }, () => udpSocket()));
  let replies = 0;
  for (const s of socks) s.on('message', () => replies++);
  let bytes = 0;
  const res = await paced(async (i) => {
    const p = make();
    bytes += p.length;
    await sendTo(socks[i % socks.length]!, p, port);
  });
  process.stdout.write(`SENT ${res.sent}\n`);
  await sleep(holdMs);
  for (const s of socks) s.close();
  return { ...res, bytes, replies };
}

/** RRQs with `timeout=255`, each from its own socket, held open and never acknowledged. */
async function rrq() {
  const socks: dgram.Socket[] = [];
  const replies: Counters = {};
  const packet = tftpRequest(values.file!, [['timeout', '255']]);
  const res = await paced(async () => {
    const s = await udpSocket();
    socks.push(s);
    s.on('message', (m) => {
      const op = String(m.length >= 2 ? m.readUInt16BE(0) : -1);
      replies[op] = (replies[op] ?? 0) + 1;
    });
    await sendTo(s, packet, 69);
  });
  process.stdout.write(`SENT ${res.sent}\n`);
  await sleep(holdMs);
  for (const s of socks) s.close();
  // Opcodes: 6 OACK (transfer opened, waiting for our ACK), 3 DATA, 5 ERROR (refused).
  return { ...res, sockets: socks.length, repliesByOpcode: replies };
}

/** Half-open HTTP requests: a request line and a header or two, never the blank line that ends them. */
async function slowloris(port: number) {
  const open = new Set<net.Socket>();
  let connected = 0;
  let closedByPeer = 0;
  let peakOpen = 0;
  let attempted = 0;
  let pending = 0;
  const concurrency = Number(values.concurrency);
  const connectOne = () =>
    new Promise<void>((resolve) => {
      attempted++;
      pending++;
      const s = net.connect({ host: target, port });
      let up = false;
      s.setTimeout(5000, () => s.destroy(Object.assign(new Error('connect timeout'), { code: 'CONNECT_TIMEOUT' })));
      s.once('connect', () => {
        up = true;
        connected++;
        pending--;
        s.setTimeout(0);
        open.add(s);
        peakOpen = Math.max(peakOpen, open.size);
        s.write(`GET /files/${values.file} HTTP/1.1\r\nHost: ${target}\r\nUser-Agent: slow\r\n`);
        resolve();
      });
      s.on('data', () => {});
      s.on('error', (err) => {
        if (!up) countError(err);
      });
      s.once('close', () => {
        if (up) {
          if (open.delete(s)) closedByPeer++;
        } else {
          pending--;
          resolve();
        }
      });
    });
  while (attempted < count && Date.now() - started < maxMs) {
    while (pending < concurrency && attempted < count) void connectOne();
    await sleep(5);
  }
  for (let k = 0; k < 1000 && pending > 0; k++) await sleep(10);
  const openMs = Date.now() - started;
  process.stdout.write(`SENT ${connected}\n`);
  // Hold: one more header line every 10 s per socket, as slowloris does to defeat naive idle timeouts.
  const holdEnd = Date.now() + holdMs;
  let dribbles = 0;
  while (Date.now() < holdEnd) {
    await sleep(Math.min(10_000, Math.max(0, holdEnd - Date.now())));
    if (Date.now() >= holdEnd) break;
    for (const s of open) s.write(`X-${dribbles}: ${dribbles}\r\n`);
    dribbles++;
  }
  const openAtEnd = open.size;
  for (const s of open) s.destroy();
  return { attempted, connected, openMs, peakOpen, openAtEnd, closedByPeer, dribbles };
}

/** DISCOVERs from `count` random MACs; each MAC is new, none ever sends a REQUEST. */
async function discover() {
  const s = await udpSocket();
  const res = await paced(async () => {
    await sendTo(s, dhcpRequest(r, randomMac(r), 1), 67);
  });
  process.stdout.write(`SENT ${res.sent}\n`);
  await sleep(holdMs);
  s.close();
  return res;
}

async function main() {
  switch (mode) {
    case 'dhcp-fuzz': {
      const macs = Array.from({ length: 16 }, () => randomMac(r));
      return fuzz(Number(values.port ?? 67), () => fuzzDhcp(r, macs));
    }
    case 'tftp-fuzz':
      return fuzz(Number(values.port ?? 69), () => fuzzTftp(r));
    case 'rrq':
      return rrq();
    case 'slowloris':
      return slowloris(Number(values.port ?? 8091));
    case 'discover':
      return discover();
    default:
      throw new Error(`unknown mode ${mode}: dhcp-fuzz, tftp-fuzz, rrq, slowloris or discover`);
  }
}

const result = await main();
process.stdout.write(`RESULT ${JSON.stringify({ mode, ...result, errors, totalMs: Date.now() - started })}\n`);
process.exit(0);
