/**
 * Reprovision and rollouts end to end against a real daemon in this process: DHCP on loopback, simulated machines
 * behind a fake HTTP BMC (sim.ts) that PXE-boot, do their relayed DORA and call back when power-cycled.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../src/log.js';
import { BMC_PASSWORD_MASK } from '../../src/model/machine.js';
import { BMC_PASSWORD, type FleetApi, type FleetDaemon, type SimFleet, startFleetDaemon } from './sim.js';

let fleet: FleetDaemon;
let sim: SimFleet;
let api: FleetApi;
let token: string;
let dataDir: string;
let logText = '';
const base = () => fleet.base();

beforeAll(async () => {
  const sink = new Writable({
    write(chunk, _e, cb) {
      logText += chunk;
      cb();
    },
  });
  fleet = await startFleetDaemon({
    log: pino({ level: 'debug' }, sink) as unknown as Logger,
    config: { logLevel: 'debug' },
  });
  ({ sim, api, token, dataDir } = fleet);
  for (let i = 1; i <= 5; i++) {
    const name = `node${i}`;
    const mac = `52:54:00:fe:00:0${i}`;
    sim.add(name, mac, i === 2 ? 'off' : 'on');
    const r = await api('POST', '/api/v1/machines', { name, macs: [mac], bootEnv: 'local', bmc: sim.bmcOf(name) });
    expect(r.status).toBe(201);
  }
});
afterAll(async () => {
  await fleet?.close();
});

const waitRollout = async (id: string, states: string[]) => {
  await expect
    .poll(async () => (await api('GET', `/api/v1/rollouts/${id}`)).body.state, { timeout: 60_000, interval: 200 })
    .toSatisfy((s: string) => states.includes(s));
  return (await api('GET', `/api/v1/rollouts/${id}`)).body;
};

describe('machine bmc settings', () => {
  it('validate with the field named, and never answer the password (a mask sent back keeps it)', async () => {
    const bad = await api('PATCH', '/api/v1/machines/node1', { bmc: { driver: 'snmp', address: 'x' } });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain('bmc.driver');
    const one = await api('GET', '/api/v1/machines/node1');
    expect(one.body.bmc).toMatchObject({ driver: 'redfish', username: 'admin', password: BMC_PASSWORD_MASK });
    const list = await api('GET', '/api/v1/machines');
    expect(list.text).not.toContain(BMC_PASSWORD);
    // GET, edit, PUT back: the mask stands for the stored password, which still reaches the BMC.
    const { createdAt: _c, updatedAt: _u, ...doc } = one.body;
    const put = await api('PUT', '/api/v1/machines/node1', { ...doc, description: 'rack 4' });
    expect(put.status).toBe(200);
    expect(put.text).not.toContain(BMC_PASSWORD);
    const merge = await api('PATCH', '/api/v1/machines/node1', { bmc: { password: BMC_PASSWORD_MASK } });
    expect(merge.status).toBe(200);
    const st = await api('GET', '/api/v1/machines/node1/power');
    expect(st.body).toMatchObject({ state: 'on', driver: 'redfish' });
  });
});

describe('power API', () => {
  it('sets the boot device and powers; a wrong password is a clear 502 naming auth', async () => {
    expect(
      (await api('POST', '/api/v1/machines/node3/power', { action: 'bootdev', device: 'disk' })).body,
    ).toMatchObject({
      device: 'disk',
      persistent: false,
      uefi: false,
    });
    expect((await api('POST', '/api/v1/machines/node3/power', { action: 'reset' })).status).toBe(200);
    expect((await api('POST', '/api/v1/machines/node3/power', { action: 'explode' })).status).toBe(400);
    await api('PATCH', '/api/v1/machines/node5', { bmc: { password: 'wrong' } });
    const denied = await api('POST', '/api/v1/machines/node5/power', { action: 'on' });
    expect(denied.status).toBe(502);
    expect(denied.body.detail).toMatch(/refused the credentials/);
    await api('PATCH', '/api/v1/machines/node5', { bmc: { password: BMC_PASSWORD } });
    const boots = await api('GET', '/api/v1/machines/node3/boots');
    expect(JSON.stringify(boots.body)).toMatch(/bootdev:disk/);
  });
});

describe('reprovision', () => {
  it('assigns, sets PXE once before the power cycle (on when off), waits for DHCP and the callback', async () => {
    const r = await api('POST', '/api/v1/machines/node2/actions/reprovision', { bootEnv: 'good' });
    expect(r.status).toBe(202);
    await expect
      .poll(async () => (await api('GET', '/api/v1/machines/node2/actions/reprovision')).body.step, {
        timeout: 30_000,
        interval: 200,
      })
      .toBe('done');
    const ops = sim.machines.get('node2')!.ops.map((o) => o.op);
    // It was off: powered on, not cycled; the override came first.
    expect(ops.slice(-3)).toEqual(['bootdev:pxe', 'status', 'on']);
    expect((await api('GET', '/api/v1/machines/node2')).body.bootEnv).toBe('good');
    const steps = (await api('GET', '/api/v1/machines/node2/actions/reprovision')).body.steps.map((s: any) => s.step);
    expect(steps).toEqual(['assign', 'bootdev', 'power', 'dhcp', 'booting', 'done']);
    const timeline = JSON.stringify((await api('GET', '/api/v1/machines/node2/boots')).body);
    expect(timeline).toMatch(/power: power cycle/);
    expect(timeline).toMatch(/booted from/);
  });

  it('refuses an unknown bootenv and a machine without a BMC it can drive', async () => {
    expect((await api('POST', '/api/v1/machines/node2/actions/reprovision', { bootEnv: 'nope' })).status).toBe(400);
    await api('POST', '/api/v1/machines', { name: 'by-hand', bmc: { driver: 'manual', address: 'none' } });
    const manual = await api('POST', '/api/v1/machines/by-hand/actions/reprovision', { bootEnv: 'good' });
    expect(manual.status).toBe(409);
    expect(manual.body.detail).toMatch(/no BMC Plinth can drive/);
  });
});

describe('rollouts', () => {
  it('go batch by batch behind the health gate', async () => {
    const r = await api('POST', '/api/v1/rollouts', {
      selector: { namePattern: 'node?' },
      bootEnv: 'good',
      batchSize: 2,
      healthUrl: sim.healthUrl,
      healthTimeout: 30,
    });
    expect(r.status).toBe(201);
    expect(r.body.batches).toBe(3);
    const done = await waitRollout(r.body.id, ['done', 'failed', 'rolled-back']);
    expect(done.state).toBe('done');
    expect(done.machines.every((m: any) => m.result === 'ok')).toBe(true);
    // Batch 2's first power call came after every machine of batch 1 had called back.
    const batch = (n: number) => done.machines.filter((m: any) => m.batch === n).map((m: any) => m.name);
    const firstOp = (name: string) =>
      sim.machines
        .get(name)!
        .ops.filter((o) => o.op === 'bootdev:pxe')
        .at(-1)!.at;
    const b1End = Math.max(
      ...batch(0).map((n: string) => Date.parse(done.machines.find((m: any) => m.name === n).run.finishedAt)),
    );
    for (const n of batch(1)) expect(firstOp(n)).toBeGreaterThanOrEqual(b1End);
    for (const m of ['node1', 'node3', 'node4', 'node5'])
      expect((await api('GET', `/api/v1/machines/${m}`)).body.bootEnv).toBe('good');
  });

  it('to a broken bootenv stop after the first batch and roll it back to what each machine had', async () => {
    await api('PATCH', '/api/v1/machines/node3', { bootEnv: 'local' });
    const before = Object.fromEntries([...sim.machines.values()].map((m) => [m.name, m.ops.length]));
    const r = await api('POST', '/api/v1/rollouts', {
      selector: { machines: ['node3', 'node4', 'node5'] },
      bootEnv: 'broken',
      batchSize: 1,
      healthTimeout: 3,
      onFailure: 'rollback',
    });
    expect(r.status).toBe(201);
    const end = await waitRollout(r.body.id, ['done', 'failed', 'rolled-back']);
    expect(end.state).toBe('rolled-back');
    expect(end.reason).toMatch(/batch 1 failed: node3: no booted callback/);
    expect(end.machines[0]).toMatchObject({ name: 'node3', result: 'rolled-back', previousBootEnv: 'local' });
    expect((await api('GET', '/api/v1/machines/node3')).body.bootEnv).toBe('local');
    // Nothing touched the later batches.
    for (const n of ['node4', 'node5']) expect(sim.machines.get(n)!.ops.length).toBe(before[n]);
    expect(sim.count('node3', 'cycle')).toBeGreaterThanOrEqual(2);
  });

  it('fail a machine that boots but never passes its health check', async () => {
    const r = await api('POST', '/api/v1/rollouts', {
      selector: { machines: ['node1'] },
      bootEnv: 'good',
      healthUrl: sim.healthUrl.replace('{name}', 'nobody-{name}'),
      healthTimeout: 2,
    });
    const end = await waitRollout(r.body.id, ['done', 'failed', 'rolled-back']);
    expect(end.state).toBe('failed');
    expect(end.reason).toMatch(/node1: not healthy within 2 s of booting/);
    expect(end.machines[0].run.step).toBe('done');
  });

  it('refuse a machine that is in another unfinished rollout', async () => {
    const a = await api('POST', '/api/v1/rollouts', {
      selector: { machines: ['node1'] },
      bootEnv: 'good',
      pauseBetween: 3600,
      batchSize: 1,
    });
    const b = await api('POST', '/api/v1/rollouts', { selector: { machines: ['node1'] }, bootEnv: 'local' });
    expect(b.status).toBe(409);
    expect(b.body.detail).toMatch(/another unfinished rollout.*node1/);
    await waitRollout(a.body.id, ['done']);
  });

  it('retry once when the BMC ignores the boot override, then fail saying so', async () => {
    const m = sim.add('stubborn', '52:54:00:fe:00:99');
    m.ignoresOverride = true;
    await api('POST', '/api/v1/machines', {
      name: 'stubborn',
      macs: [m.mac],
      bootEnv: 'local',
      bmc: sim.bmcOf('stubborn'),
    });
    const r = await api('POST', '/api/v1/rollouts', {
      selector: { machines: ['stubborn'] },
      bootEnv: 'good',
      dhcpTimeout: 1,
    });
    const end = await waitRollout(r.body.id, ['done', 'failed', 'rolled-back']);
    expect(end.state).toBe('failed');
    expect(end.reason).toMatch(/stubborn: BMC ignored the boot override/);
    expect(m.ops.map((o) => o.op)).toEqual(['bootdev:pxe', 'status', 'cycle', 'off', 'bootdev:pxe', 'on']);
    expect(end.machines[0].run.steps.map((s: { step: string }) => s.step)).toEqual([
      'assign',
      'bootdev',
      'power',
      'dhcp',
      'fallback',
      'failed',
    ]);
    const timeline = JSON.stringify((await api('GET', '/api/v1/machines/stubborn/boots')).body);
    expect(timeline).toContain('BMC ignored the boot override');
  });

  it('pause, resume and abort through the API; the password is in no log line', async () => {
    const r = await api('POST', '/api/v1/rollouts', {
      selector: { machines: ['node1', 'node4'] },
      bootEnv: 'local',
      batchSize: 1,
      pauseBetween: 3600,
    });
    await expect
      .poll(async () => (await api('GET', `/api/v1/rollouts/${r.body.id}`)).body.batch, { timeout: 30_000 })
      .toBe(1);
    expect((await api('POST', `/api/v1/rollouts/${r.body.id}/pause`)).body.state).toBe('paused');
    expect((await api('POST', `/api/v1/rollouts/${r.body.id}/pause`)).status).toBe(409);
    expect((await api('POST', `/api/v1/rollouts/${r.body.id}/resume`)).body.state).toBe('running');
    expect((await api('POST', `/api/v1/rollouts/${r.body.id}/abort`)).body.state).toBe('aborted');
    expect((await api('GET', '/api/v1/rollouts')).body.map((x: any) => x.id)).toContain(r.body.id);
    expect(logText).toContain('rollout');
    expect(logText).not.toContain(BMC_PASSWORD);
    const audit = await api('GET', '/api/v1/audit?limit=1000');
    expect(audit.status).toBe(200);
    expect(audit.text).toContain('/machines');
    expect(audit.text).not.toContain(BMC_PASSWORD);
  });
});

describe('CLI', () => {
  const cli = async (args: string[], errTTY = false) => {
    const o = { out: '', err: '' };
    const io = {
      out: (s: string) => {
        o.out += s;
      },
      err: (s: string) => {
        o.err += s;
      },
      outTTY: false,
      errTTY,
    };
    const { run } = await import('../../src/cli/main.js');
    const code = await run([...args, '--endpoint', base(), '--token', token, '-o', 'json'], { io, env: {} });
    return { code, out: o.out, err: o.err, json: () => JSON.parse(o.out) };
  };

  it('plinth power: status, bootdev with its flavour, and a usage error for an unknown action', async () => {
    expect((await cli(['power', 'node1'])).json()).toMatchObject({ state: 'on' });
    const bd = await cli(['power', 'node1', 'bootdev', 'pxe', '--uefi']);
    expect(bd.json()).toMatchObject({ device: 'pxe', uefi: true, persistent: false });
    expect(sim.machines.get('node1')!.ops.at(-1)!.op).toBe('bootdev:pxe');
    expect((await cli(['power', 'node1', 'explode'])).code).toBe(2);
  });

  it('plinth reprovision --wait and plinth rollout create / status --watch follow to the end', async () => {
    const rp = await cli(['reprovision', 'node5', '--bootenv', 'local', '--wait']);
    expect(rp.code).toBe(0);
    expect(rp.json().step).toBe('done');
    const file = path.join(dataDir, 'rollout.yaml');
    writeFileSync(file, 'selector: { machines: [node4, node5] }\nbootEnv: good\nbatchSize: 1\n');
    const created = await cli(['rollout', 'create', '-f', file]);
    expect(created.code).toBe(0);
    const watched = await cli(['rollout', 'status', created.json().id, '--watch'], true);
    expect(watched.code).toBe(0);
    expect(watched.json().state).toBe('done');
    // The progress bar drew on stderr up to every machine.
    expect(watched.err).toMatch(/rollout .* machines .*100% +\d+ \/ \d+/);
    expect((await cli(['rollout', 'status'])).json().length).toBeGreaterThanOrEqual(4);
  });
});
