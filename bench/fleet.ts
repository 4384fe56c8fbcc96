/**
 * Rollout vs one-at-a-time reprovisioning, for a fleet of simulated machines (`npm run bench:fleet`).
 *
 * A real daemon (DHCP on loopback ports, its store in a temp dir) drives N simulated machines behind a fake BMC
 * (test/fleet/sim.ts): a power cycle with PXE once makes a machine wait `--boot-ms` (firmware and OS time, the
 * part Plinth does not control), do a relayed DHCP DORA against the daemon and call back `booted`. The same fleet
 * is reprovisioned twice: one machine after another (what DRP and MAAS do on request), then by one rollout in
 * batches. Prints both totals, their ratio, and Plinth's own time per machine (the reprovision's steps minus
 * the simulated boot).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startDaemon } from '../src/daemon.js';
import { createLogger } from '../src/log.js';
import { ports } from '../test/dhcp/helpers.js';
import { httpBmcDrivers, simFleet } from '../test/fleet/sim.js';
import { testConfig } from '../test/helpers/daemon.js';

const { values } = parseArgs({
  options: {
    machines: { type: 'string', default: '20' },
    'batch-size': { type: 'string', default: '5' },
    'boot-ms': { type: 'string', default: '3000' },
  },
});
const N = Math.min(200, Math.max(1, Number(values.machines)));
const BATCH = Math.max(1, Number(values['batch-size']));
const BOOT_MS = Math.max(0, Number(values['boot-ms']));

const dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-bench-fleet-'));
const p = ports();
let token = '';
let httpPort = 0;
const sim = await simFleet({
  dhcpPort: p.port,
  relayPort: p.relayPort,
  api: () => ({ url: `http://127.0.0.1:${httpPort}`, token }),
  bootDelayMs: BOOT_MS,
});
const daemon = await startDaemon(
  testConfig(dataDir, { dhcp: true, dhcpPort: p.port, dhcpProxyPort: p.proxyPort }),
  createLogger('warn'),
  {},
  {
    dhcp: {
      wildcard: true,
      clientPort: p.clientPort,
      relayPort: p.relayPort,
      replyTo: (d) => ({ address: '127.0.0.1', port: d.port }),
    },
    drivers: httpBmcDrivers(sim.bmcUrl),
  },
);
httpPort = daemon.httpPort;
token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();

async function api(method: string, u: string, body?: unknown) {
  const r = await fetch(`http://127.0.0.1:${httpPort}${u}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${method} ${u}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, f: () => Promise<T | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await f();
    if (v !== undefined) return v;
    await sleep(100);
  }
  throw new Error(`${what}: not within ${ms} ms`);
}

try {
  await api('POST', '/api/v1/subnets', {
    name: 'lab',
    subnet: '10.99.0.0/16',
    activeStart: '10.99.1.1',
    activeEnd: '10.99.4.250',
  });
  const local = await api('GET', '/api/v1/bootenvs/local');
  const { createdAt: _c, updatedAt: _u, ...rest } = local;
  for (const name of ['img-a', 'img-b']) await api('POST', '/api/v1/bootenvs', { ...rest, name });
  for (let i = 0; i < N; i++) {
    const name = `sim${String(i).padStart(3, '0')}`;
    const mac = `52:54:00:fa:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    sim.add(name, mac, 'on');
    await api('POST', '/api/v1/machines', { name, macs: [mac], bootEnv: 'local', bmc: sim.bmcOf(name) });
  }
  const names = [...sim.machines.keys()];

  // One after another, as an operator (or DRP/MAAS on request) would.
  let own = 0;
  const t0 = Date.now();
  for (const name of names) {
    const s = Date.now();
    await api('POST', `/api/v1/machines/${name}/actions/reprovision`, { bootEnv: 'img-a' });
    const r = await until(
      name,
      async () => {
        const st = await api('GET', `/api/v1/machines/${name}/actions/reprovision`);
        if (st.step === 'failed') throw new Error(`${name}: ${st.reason ?? 'failed'}`);
        return st.step === 'done' ? st : undefined;
      },
      60_000 + BOOT_MS * 3,
    );
    own += Date.now() - s - BOOT_MS;
    void r;
  }
  const serial = Date.now() - t0;

  // One rollout in batches.
  const t1 = Date.now();
  const ro = await api('POST', '/api/v1/rollouts', {
    selector: { machines: names },
    bootEnv: 'img-b',
    batchSize: BATCH,
  });
  const done = await until(
    'rollout',
    async () => {
      const r = await api('GET', `/api/v1/rollouts/${ro.id}`);
      return ['done', 'failed', 'rolled-back', 'aborted'].includes(r.state) ? r : undefined;
    },
    60_000 + N * (BOOT_MS + 5000),
  );
  const rolled = Date.now() - t1;
  const ok = done.machines.filter((m: { result?: string }) => m.result === 'ok').length;

  console.log(`fleet: ${N} simulated machines, each ${BOOT_MS} ms from power-on to its first DHCP (firmware)`);
  console.log(`  one reprovision after another: ${(serial / 1000).toFixed(1)} s`);
  console.log(
    `  one rollout, batches of ${BATCH}:     ${(rolled / 1000).toFixed(1)} s (${done.state}, ${ok}/${N} ok, ${done.batches} batches)`,
  );
  console.log(`  rollout / sum of single reprovisions: ${(rolled / serial).toFixed(2)}`);
  console.log(`  Plinth's own time per single reprovision (total minus the simulated boot): ${Math.round(own / N)} ms`);
} finally {
  await daemon.close();
  await sim.close();
  rmSync(dataDir, { recursive: true, force: true });
}
