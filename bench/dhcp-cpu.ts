/**
 * CPU per DORA of the DHCP state machine, socket-free: answerRequest driven with DISCOVER/REQUEST pairs (30 in
 * flight, REQUESTs awaited every 4 DORAs so commits come as often as under a flood) against a file store (its
 * writer thread commits with fsync as in the daemon) and a table that grows to `--leases`. Prints the CPU time of
 * every thread and of the main thread per DORA (/proc/self/task/TID/schedstat), a figure that holds up on a
 * loaded host where latency does not. `--baseline DIR` runs another checkout the same way, runs interleaved:
 *
 *   taskset -c 1 npx tsx bench/dhcp-cpu.ts --runs 3 --baseline /tmp/plinth-before
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { alternateRuns } from './alternate.js';

const { values } = parseArgs({
  options: {
    leases: { type: 'string', default: '20000' },
    runs: { type: 'string', default: '3' },
    baseline: { type: 'string' },
    // Internal: one run in a child process (the store's writer thread and its CPU are that process's).
    child: { type: 'string' },
  },
});

const WINDOW = 30;
const WARM_UP = 2000;

function cpuNs(): { all: number; main: number } {
  const of = (t: string | number) =>
    Number(readFileSync(`/proc/${process.pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
  let all = 0;
  for (const t of readdirSync(`/proc/${process.pid}/task`)) all += of(t);
  return { all, main: of(process.pid) };
}

async function oneRun(tree: string, n: number): Promise<string> {
  const imp = (p: string) => import(path.join(tree, p));
  const { loadLeaseTable } = await imp('src/dhcp/leases.ts');
  const { staticMachines } = await imp('src/dhcp/machines.ts');
  const { offerGate } = await imp('src/dhcp/offers.ts');
  const { bootDecider } = await imp('src/dhcp/boot.ts');
  const { MessageType, Opt } = await imp('src/dhcp/options.ts');
  const { emptyPacket, macBytes } = await imp('src/dhcp/packet.ts');
  const { answerRequest } = await imp('src/dhcp/state-machine.ts');
  const { createBus } = await imp('src/events.ts');
  const { silentLogger } = await imp('src/log.ts');
  const { ipToInt, parseCidr } = await imp('src/model/common.ts');
  const { Subnet } = await imp('src/model/subnet.ts');
  const { openSqliteStore } = await imp('src/store/sqlite.ts');
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-cpu-'));
  const store = openSqliteStore(path.join(dir, 'plinth.db'));
  try {
    const bus = createBus();
    bus.on(() => {});
    const now = Date.now;
    const server = '10.98.0.1';
    const leases = await loadLeaseTable({ store, bus, log: silentLogger, now, excluded: () => new Set([server]) });
    const def = { name: 'bench', subnet: '10.98.0.0/16', activeStart: '10.98.1.1', activeEnd: '10.98.196.80' };
    const lab = {
      ...Subnet.parse(def),
      net: parseCidr(def.subnet),
      start: ipToInt(def.activeStart),
      end: ipToInt(def.activeEnd),
    };
    const env = {
      leases,
      served: { reservationFor: () => undefined },
      machines: staticMachines(new Map()),
      decide: bootDecider({ prefs: () => ({}), quirks: () => [], httpPort: 8080 }),
      offers: offerGate({ offerSeconds: 60, now, held: (p: unknown) => leases.held(p), log: silentLogger }),
      isOurs: (a: string, b: string) => a === b,
      now,
      offerSeconds: 60,
      declineSeconds: 600,
      bus,
      log: silentLogger,
      warnOnce: () => {},
    };
    const mac = (i: number) =>
      `02:00:${[i >>> 24, (i >> 16) & 255, (i >> 8) & 255, i & 255].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
    const ip4 = (a: string) => Buffer.from(a.split('.').map(Number));
    const ask = (type: number, i: number, opts: [number, Buffer][] = []) => {
      const p = emptyPacket(1);
      p.xid = i;
      p.chaddr = macBytes(mac(i));
      p.giaddr = '10.98.0.2';
      p.options.set(Opt.MessageType, Buffer.from([type]));
      for (const [c, v] of opts) p.options.set(c, v);
      const req = { pkt: p, mac: mac(i), type, subnet: lab, server, ingress: `*/${p.giaddr}`, source: p.giaddr };
      return answerRequest(req, env);
    };
    const offered = new Map<number, string>();
    const run = async (from: number, to: number) => {
      const acks: Promise<unknown>[] = [];
      for (let i = from; i < to + WINDOW; i++) {
        if (i < to) offered.set(i, (await ask(MessageType.DISCOVER, i)).reply.yiaddr);
        const j = i - WINDOW;
        if (j >= from) {
          const opts: [number, Buffer][] = [
            [Opt.ServerId, ip4(server)],
            [Opt.RequestedIp, ip4(offered.get(j)!)],
          ];
          acks.push(ask(MessageType.REQUEST, j, opts));
        }
        if (i % 4 === 0) await Promise.all(acks.splice(0));
      }
      await Promise.all(acks);
    };
    await run(0, WARM_UP);
    const c0 = cpuNs();
    const t0 = performance.now();
    await run(WARM_UP, WARM_UP + n);
    const c1 = cpuNs();
    const us = (ns: number) => (ns / 1000 / n).toFixed(1).padStart(6);
    return `${n} DORAs, ${leases.size()} leases: CPU ${us(c1.all - c0.all)} µs/DORA, main thread ${us(c1.main - c0.main)}, wall ${(((performance.now() - t0) / n) * 1000).toFixed(0)} µs/DORA`;
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (values.child) {
  const [tree, n] = values.child.split('|');
  console.log(await oneRun(tree!, Number(n)));
  process.exit(0);
} else {
  alternateRuns(fileURLToPath(import.meta.url), {
    runs: Number(values.runs),
    baseline: values.baseline,
    childArgs: [String(values.leases)],
    timeoutMs: 600_000,
  });
}
