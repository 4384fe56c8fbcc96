/**
 * A rollout survives kill -9 of the daemon: the restarted daemon resumes it from the step it had persisted and
 * finishes, and no machine is power-cycled twice for one step. The BMC (and its call counts) lives in this test
 * process, outside the daemon that is killed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ports } from '../dhcp/helpers.js';
import { exited, freePort, ROOT, stopChild, waitHttp, withOutput } from '../helpers/proc.js';
import { type SimFleet, simFleet } from './sim.js';

const p = ports();
const dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-fleet-resume-'));
let child: (ChildProcess & { output: () => string }) | undefined;
let sim: SimFleet | undefined;
let httpPort = 0;
let token = '';

function startChild(bmcUrl: string) {
  child = withOutput(
    spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/fleet/daemon-child.ts')], {
      cwd: ROOT,
      env: {
        ...process.env,
        FLEET_BMC_URL: bmcUrl,
        FLEET_DATA_DIR: dataDir,
        FLEET_HTTP_PORT: String(httpPort),
        FLEET_DHCP_PORT: String(p.port),
        FLEET_PROXY_PORT: String(p.proxyPort),
        FLEET_CLIENT_PORT: String(p.clientPort),
        FLEET_RELAY_PORT: String(p.relayPort),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  return waitHttp(httpPort, 60_000).catch((err) => {
    throw new Error(`${(err as Error).message}; its output:\n${child?.output()}`);
  });
}

async function api(method: string, u: string, body?: unknown) {
  const r = await fetch(`http://127.0.0.1:${httpPort}${u}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined };
}

afterAll(async () => {
  await stopChild(child);
  await sim?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('rollout across kill -9', () => {
  it('resumes after a restart and finishes, with one power cycle per machine', { timeout: 120_000 }, async () => {
    httpPort = await freePort();
    // A slow firmware: the daemon is killed while it waits for the machine's DHCP.
    sim = await simFleet({
      dhcpPort: p.port,
      relayPort: p.relayPort,
      api: () => ({ url: `http://127.0.0.1:${httpPort}`, token }),
      bootDelayMs: 1500,
    });
    await startChild(sim.bmcUrl);
    token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
    const subnet = { name: 'lab', subnet: '10.99.1.0/24', activeStart: '10.99.1.100', activeEnd: '10.99.1.199' };
    expect((await api('POST', '/api/v1/subnets', subnet)).status).toBe(201);
    const names = ['r1', 'r2', 'r3'];
    for (const [i, name] of names.entries()) {
      const mac = `52:54:00:fd:00:0${i + 1}`;
      sim.add(name, mac);
      expect((await api('POST', '/api/v1/machines', { name, macs: [mac], bmc: sim.bmcOf(name) })).status).toBe(201);
    }
    const r = await api('POST', '/api/v1/rollouts', {
      selector: { namePattern: 'r?' },
      bootEnv: 'local',
      batchSize: 1,
      healthTimeout: 60,
      dhcpTimeout: 60,
    });
    expect(r.status).toBe(201);
    // Kill it once the BMC has power-cycled the second machine, before that machine's DHCP (the firmware is slow).
    await expect.poll(() => sim!.count('r2', 'cycle'), { timeout: 30_000, interval: 20 }).toBe(1);
    child!.kill('SIGKILL');
    await exited(child!);
    await startChild(sim.bmcUrl);
    await expect
      .poll(async () => (await api('GET', `/api/v1/rollouts/${r.body.id}`)).body.state, {
        timeout: 90_000,
        interval: 250,
      })
      .toBe('done');
    for (const n of names) {
      expect(sim.count(n, 'cycle')).toBe(1);
      expect(sim.count(n, 'on') + sim.count(n, 'off')).toBe(0);
    }
    const end = (await api('GET', `/api/v1/rollouts/${r.body.id}`)).body;
    expect(end.machines.map((m: { result: string }) => m.result)).toEqual(['ok', 'ok', 'ok']);
  });
});
