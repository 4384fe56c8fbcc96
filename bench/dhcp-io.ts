/**
 * The DHCP socket path alone, A/B: the server's CPU per DORA with datagrams through the native addon
 * (native/dhcp_io.c) against dgram on the same sockets (PLINTH_DHCP_IO=dgram), in one run, interleaved.
 *
 *   npx tsx bench/dhcp-io.ts [--rates 1000,3000] [--runs 3] [--seconds 4]
 *
 * Loopback only, no namespace, no root needed: a server process (this file with `serve`, pinned to CPU 1)
 * answers DORAs from a client in this process (CPU 0) sent as a relay would (giaddr 127.0.0.1, link selection
 * 82.5 naming the pool's subnet), so every reply goes back to the client's port on 127.0.0.1, never out of
 * the host. The server is a fresh one per run with its own SQLite file (the same writer thread and fsyncs as
 * the daemon). CPU time is read from /proc/PID/task/TID/schedstat over the measured period: all threads, and
 * the main thread alone. On a shared host the figures of one run are noisy: compare the lowest of each side.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { MessageType, Opt, RelaySub } from '../src/dhcp/options.js';
import { decode, emptyPacket, encode } from '../src/dhcp/packet.js';
import { startDhcpServer } from '../src/dhcp/server.js';
import { createBus } from '../src/events.js';
import { silentLogger } from '../src/log.js';
import { openSqliteStore } from '../src/store/sqlite.js';
import { cpuNs } from './dhcp-servers.js';

const SUBNET = {
  name: 'bench',
  subnet: '10.98.0.0/16',
  activeStart: '10.98.1.1',
  activeEnd: '10.98.196.80',
  leaseTime: 3600,
};

/** Relay sub-option 5 (RFC 3527): the request belongs to the pool's subnet, the reply goes to giaddr. */
const linkSelection = Buffer.from([RelaySub.LinkSelection, 4, 10, 98, 0, 1]);

if (process.argv[2] === 'serve') {
  const [, , , file, port] = process.argv;
  const store = openSqliteStore(file!);
  await store.create('subnets', SUBNET.name, SUBNET);
  const server = await startDhcpServer({
    store,
    bus: createBus(),
    log: silentLogger,
    httpPort: 8080,
    wildcard: true,
    serverAddress: '10.98.0.1',
    port: Number(port),
    proxyPort: Number(port) + 1,
    clientPort: Number(port) + 2,
    relayPort: Number(port) + 3,
  });
  process.stdout.write('READY\n');
  process.on('SIGTERM', () => {
    process.stdout.write(`STATS ${JSON.stringify(server.stats)}\n`);
    void server.close().then(() => process.exit(0));
  });
} else {
  await main();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rates: { type: 'string', default: '1000,3000' },
      runs: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '4' },
      warmup: { type: 'string', default: '500' },
      // One side only (`native` or `dgram`), e.g. to profile it: the server's PID is printed as it starts.
      modes: { type: 'string', default: 'native,dgram' },
    },
  });
  const rates = values.rates.split(',').map(Number);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'plinth-dhcp-io-'));
  let port = 20000 + Math.floor(Math.random() * 10000);
  try {
    for (const rate of rates) {
      for (let run = 0; run < Number(values.runs); run++) {
        const modes = values.modes.split(',');
        for (const mode of run % 2 ? modes.reverse() : modes) {
          port += 10;
          const r = await oneRun(mode, rate, Number(values.seconds), port, path.join(tmp, `${mode}-${rate}-${run}`), {
            warmup: Number(values.warmup),
          });
          console.log(
            `${mode.padEnd(6)} rate ${String(rate).padStart(5)}/s  DORAs ${r.acks}/${r.sent}  cpu ${r.all.toFixed(0)} µs/DORA (main ${r.main.toFixed(0)})  RA p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} ms  server ${r.stats}`,
          );
        }
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function oneRun(mode: string, rate: number, seconds: number, port: number, base: string, o: { warmup: number }) {
  const env = { ...process.env, PLINTH_DHCP_IO: mode === 'dgram' ? 'dgram' : '' };
  const node = [process.execPath, '--import', 'tsx', import.meta.filename, 'serve', `${base}.db`, String(port)];
  const child = spawn('taskset', ['-c', '1', ...node], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res, rej) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('READY') && res());
    child.once('exit', (c) => rej(new Error(`server exited ${c}`)));
  });
  console.error(`${mode} server PID ${child.pid}`);
  const relay = dgram.createSocket('udp4');
  await new Promise<void>((r) => relay.bind(port + 3, '127.0.0.1', () => r()));
  const sentAt = new Map<number, number>();
  const latencies: number[] = [];
  let acks = 0;
  relay.on('message', (m) => {
    const d = decode(m);
    if (!d.ok) return;
    const t = d.packet.options.get(Opt.MessageType)?.[0];
    if (t === MessageType.OFFER) {
      sentAt.set(d.packet.xid, performance.now());
      relay.send(packet(MessageType.REQUEST, d.packet.xid, d.packet.yiaddr), port, '127.0.0.1');
    } else if (t === MessageType.ACK) {
      acks++;
      const at = sentAt.get(d.packet.xid);
      if (at !== undefined) latencies.push(performance.now() - at);
    }
  });
  // Warm-up, unmeasured: `warmup` DORAs at 500/s.
  let xid = 1;
  await pace(500, o.warmup / 500, () => relay.send(packet(MessageType.DISCOVER, xid++), port, '127.0.0.1'));
  const settle = 300;
  await new Promise((r) => setTimeout(r, settle));
  const a0 = acks;
  latencies.length = 0;
  const c0 = cpuNs(child.pid);
  const sent = await pace(rate, seconds, () => relay.send(packet(MessageType.DISCOVER, xid++), port, '127.0.0.1'));
  await new Promise((r) => setTimeout(r, settle));
  const c1 = cpuNs(child.pid);
  const n = acks - a0;
  let stats = '';
  child.stdout.on('data', (d: Buffer) => {
    stats += d.toString();
  });
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  relay.close();
  latencies.sort((x, y) => x - y);
  return {
    sent,
    acks: n,
    all: (c1.all - c0.all) / 1000 / n,
    main: (c1.main - c0.main) / 1000 / n,
    p50: latencies[Math.floor(latencies.length * 0.5)] ?? Number.NaN,
    p99: latencies[Math.floor(latencies.length * 0.99)] ?? Number.NaN,
    stats: summary(stats),
  };
}

/** Calls `send` `rate` times a second for `seconds`, in 1 ms ticks; how many it sent. */
async function pace(rate: number, seconds: number, send: () => void): Promise<number> {
  const start = performance.now();
  let sent = 0;
  const total = rate * seconds;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    while (sent < due) {
      send();
      sent++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  return sent;
}

function packet(type: number, xid: number, requested?: string): Buffer {
  const p = emptyPacket(1);
  p.xid = xid;
  p.hops = 1;
  p.giaddr = '127.0.0.1';
  p.chaddr = Buffer.from([0x02, 0, (xid >>> 24) & 255, (xid >>> 16) & 255, (xid >>> 8) & 255, xid & 255]);
  p.options.set(Opt.MessageType, Buffer.from([type]));
  if (requested) {
    p.options.set(Opt.ServerId, Buffer.from([10, 98, 0, 1]));
    p.options.set(Opt.RequestedIp, Buffer.from(requested.split('.').map(Number)));
  }
  p.options.set(Opt.RelayAgentInfo, linkSelection);
  return encode(p);
}

/** The server's own counts: requests received and replies it could not send. */
function summary(out: string): string {
  const line = out.split('\n').find((l) => l.startsWith('STATS '));
  if (!line) return '?';
  const s = JSON.parse(line.slice(6)) as Record<string, number>;
  return `received ${s.received} offers ${s.offers} acks ${s.acks} errors ${s.errors}`;
}
