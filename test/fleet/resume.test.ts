/**
 * A rollout, and a single reprovision, survive kill -9 of the daemon: the restarted daemon resumes each from the
 * step it had persisted and finishes, and no machine is power-cycled twice for one step. The BMC (and its call counts) lives in this test
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

  it('a single reprovision (outside a rollout) resumes too, without a second power cycle', {
    timeout: 120_000,
  }, async () => {
    expect(sim, 'the rollout test above set up the daemon and the machines').toBeDefined();
    const cycles = sim!.count('r1', 'cycle');
    const bootdevs = sim!.count('r1', 'bootdev:pxe');
    const r = await api('POST', '/api/v1/machines/r1/actions/reprovision', { bootEnv: 'local' });
    expect(r.status).toBe(202);
    // Killed once the BMC has power-cycled it, while the (slow) firmware has not yet sent its DHCP.
    await expect.poll(() => sim!.count('r1', 'cycle'), { timeout: 30_000, interval: 20 }).toBe(cycles + 1);
    child!.kill('SIGKILL');
    await exited(child!);
    await startChild(sim!.bmcUrl);
    await expect
      .poll(async () => (await api('GET', '/api/v1/machines/r1/actions/reprovision')).body?.step, {
        timeout: 90_000,
        interval: 250,
      })
      .toBe('done');
    const end = (await api('GET', '/api/v1/machines/r1/actions/reprovision')).body;
    expect(end.steps.map((s: { step: string }) => s.step)).toEqual([
      'assign',
      'bootdev',
      'power',
      'dhcp',
      'booting',
      'done',
    ]);
    expect(sim!.count('r1', 'cycle')).toBe(cycles + 1);
    expect(sim!.count('r1', 'bootdev:pxe')).toBe(bootdevs + 1);
    expect(sim!.count('r1', 'on') + sim!.count('r1', 'off')).toBe(0);
    // Not a rollout: the rollouts list does not show it.
    const list = (await api('GET', '/api/v1/rollouts')).body as { id: string }[];
    expect(list).toHaveLength(1);
    // A second one for the same machine starts once this one is done.
    expect((await api('POST', '/api/v1/machines/r1/actions/reprovision', { bootEnv: 'local' })).status).toBe(202);
  });
});
