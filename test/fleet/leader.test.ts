/**
 * Rollouts with two daemons on one PostgreSQL inventory (issue 17): only the leader drives; a rollout created,
 * paused and resumed through the other daemon's API is driven by the leader, which takes the pause in (the batch
 * in flight finishes, the next waits); a single reprovision asked of the follower is driven by the leader too.
 * When the leader is SIGKILLed mid-rollout, the other daemon takes the lead and finishes the rollout from its
 * stored steps without power-cycling any machine twice. Daemon A is a child process (so it can be killed), B runs
 * in this process; the BMC and the simulated machines live in the test. PostgreSQL only.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { ports } from '../dhcp/helpers.js';
import { exited, freePort, ROOT, stopChild, waitHttp, withOutput } from '../helpers/proc.js';
import { backends, PG_URL, skipUnavailable } from '../store/backends.js';
import { FLEET_SUBNET, fleetDaemonConfig, fleetDaemonOptions, type SimFleet, simFleet } from './sim.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;
const TOKEN = 'fleet-leader-test-admin-token-0123456789';
const dirs: string[] = [];
let child: (ChildProcess & { output: () => string }) | undefined;
let b: Daemon | undefined;
let sim: SimFleet | undefined;
afterAll(async () => {
  await stopChild(child);
  await b?.close();
  await sim?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const tmp = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'plinth-fleet-leader-'));
  dirs.push(d);
  return d;
};

const api = async (port: number, method: string, u: string, body?: unknown) => {
  const r = await fetch(`http://127.0.0.1:${port}${u}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined, text };
};

type Listed = { serverId: string; alive: boolean; leader: boolean };
const leaders = async (port: number) =>
  ((await api(port, 'GET', '/api/v1/daemons')).body as Listed[])
    .filter((d) => d.leader)
    .map((d) => d.serverId)
    .sort();

describe('rollouts on two daemons sharing PostgreSQL', () => {
  skipUnavailable(pgBackend);

  it('only the leader drives; requests on the other reach it; a new leader finishes after a SIGKILL', {
    timeout: 180_000,
  }, async () => {
    const { where: schema } = await pgBackend.db();
    const url = new URL(PG_URL!);
    url.searchParams.set('options', `-c search_path=${schema}`);
    const pA = ports();
    const pB = ports();
    // The machines' DHCP and callbacks go to B; their BMC answers whichever daemon drives them.
    sim = await simFleet({
      dhcpPort: pB.port,
      relayPort: pB.relayPort,
      api: () => ({ url: `http://127.0.0.1:${b!.httpPort}`, token: TOKEN }),
      bootDelayMs: 1500,
    });
    const aPort = await freePort();
    child = withOutput(
      spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/fleet/daemon-child.ts')], {
        cwd: ROOT,
        env: {
          ...process.env,
          FLEET_BMC_URL: sim.bmcUrl,
          FLEET_DATA_DIR: tmp(),
          FLEET_HTTP_PORT: String(aPort),
          FLEET_DHCP_PORT: String(pA.port),
          FLEET_PROXY_PORT: String(pA.proxyPort),
          FLEET_CLIENT_PORT: String(pA.clientPort),
          FLEET_RELAY_PORT: String(pA.relayPort),
          FLEET_STORE: url.toString(),
          FLEET_SERVER_ID: 'rack-a',
          FLEET_ADMIN_TOKEN: TOKEN,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    await waitHttp(aPort, 60_000).catch((err) => {
      throw new Error(`${(err as Error).message}; its output:\n${child?.output()}`);
    });
    await expect.poll(() => leaders(aPort), { timeout: 20_000, interval: 200 }).toEqual(['rack-a']);

    b = await startDaemon(
      fleetDaemonConfig(tmp(), pB, { store: url.toString(), serverId: 'rack-b' }),
      silentLogger,
      { PLINTH_ADMIN_TOKEN: TOKEN },
      fleetDaemonOptions(pB, sim.bmcUrl),
    );
    const bPort = b.httpPort;
    const onB = (method: string, u: string, body?: unknown) => api(bPort, method, u, body);
    // B waits for the lock A holds: exactly one leads, as both list it.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await leaders(bPort)).toEqual(['rack-a']);
    expect((await onB('GET', '/api/v1/info')).body.daemon).toEqual({ serverId: 'rack-b', leader: false });

    expect((await onB('POST', '/api/v1/subnets', FLEET_SUBNET)).status).toBe(201);
    const names = ['r1', 'r2', 'r3', 's1'];
    for (const [i, name] of names.entries()) {
      const mac = `52:54:00:fe:00:0${i + 1}`;
      sim.add(name, mac);
      const made = await onB('POST', '/api/v1/machines', { name, macs: [mac], bmc: sim.bmcOf(name) });
      expect(made.status, made.text).toBe(201);
    }

    // A single reprovision asked of the follower: stored there, driven by the leader.
    expect((await onB('POST', '/api/v1/machines/s1/actions/reprovision', { bootEnv: 'local' })).status).toBe(202);
    await expect
      .poll(async () => (await onB('GET', '/api/v1/machines/s1/actions/reprovision')).body?.step, {
        timeout: 30_000,
        interval: 200,
      })
      .toBe('done');
    expect(sim.count('s1', 'cycle')).toBe(1);

    const r = await onB('POST', '/api/v1/rollouts', {
      selector: { namePattern: 'r?' },
      bootEnv: 'local',
      batchSize: 1,
      healthTimeout: 60,
      dhcpTimeout: 60,
    });
    expect(r.status, r.text).toBe(201);
    const id = r.body.id as string;
    const state = async () => (await onB('GET', `/api/v1/rollouts/${id}`)).body;

    // Paused through the follower while the leader runs batch 1: that batch finishes, batch 2 waits.
    await expect.poll(() => sim!.count('r1', 'cycle'), { timeout: 30_000, interval: 20 }).toBe(1);
    const paused = await onB('POST', `/api/v1/rollouts/${id}/pause`);
    expect(paused.status, paused.text).toBe(200);
    await expect.poll(async () => (await state()).machines[0].result, { timeout: 30_000, interval: 200 }).toBe('ok');
    await new Promise((res) => setTimeout(res, 2500));
    expect(sim.count('r2', 'cycle')).toBe(0);
    expect((await state()).state).toBe('paused');

    // Resumed through the follower: the leader goes on; killed after r2's power cycle, before its DHCP.
    expect((await onB('POST', `/api/v1/rollouts/${id}/resume`)).status).toBe(200);
    await expect.poll(() => sim!.count('r2', 'cycle'), { timeout: 30_000, interval: 20 }).toBe(1);
    child.kill('SIGKILL');
    await exited(child);

    await expect.poll(() => leaders(bPort), { timeout: 30_000, interval: 200 }).toEqual(['rack-b']);
    await expect.poll(async () => (await state()).state, { timeout: 90_000, interval: 250 }).toBe('done');
    const end = await state();
    expect(end.machines.map((m: { result: string }) => m.result)).toEqual(['ok', 'ok', 'ok']);
    for (const n of ['r1', 'r2', 'r3', 's1']) {
      expect(sim.count(n, 'cycle'), n).toBe(1);
      expect(sim.count(n, 'on') + sim.count(n, 'off'), n).toBe(0);
    }
  });
});
