/**
 * Rollouts on real (emulated) machines: three lab VMs with BMCs (two ipmi_sim, one Plinth's Redfish emulator on
 * QEMU), installed on `local`, so only a power cycle with PXE once that Plinth sends through each BMC makes them
 * netboot. A rollout to the lab bootenv in batches of one succeeds; a rollout to a bootenv whose initrd never calls
 * back stops after its first batch and rolls that machine back. Asserted through the API only; the timings
 * (reprovision steps, boot timeline) are printed, never asserted.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256File } from '../../src/files/store-files.js';
import { nsCurl } from '../../src/lab/api.js';
import { labDown } from '../../src/lab/lab.js';
import { createNamespace, deleteNamespace, type NsProcess, namespaces } from '../../src/lab/netns.js';
import { buildImages, IMAGES, labBootenv, ROOT, rolloutEnd, startPlinth } from './setup.js';

const SRV = 'plinth-e2e-rollsrv';
const LAB = 'e2e-roll'; // its namespace: plinth-e2e-roll
const TOKEN = 'e2e-roll-token-0123456789abcdefghijkl';
const WORK = path.join(ROOT, '.lab/e2e-roll');
const LABDIR = path.join(WORK, 'lab');
const VMS = ['lab-vm-1', 'lab-vm-2', 'lab-vm-3'];
const api = nsCurl(SRV, 'http://127.0.0.1:8091', TOKEN);
let plinth: NsProcess | undefined;

/**
 * The CLI in the server's network namespace only (nsenter, not `ip netns exec`): `ip netns exec` also gives it a
 * mount namespace of its own, so the lab namespace `lab up` creates would be mounted there alone, invisible to
 * `labDown` here, and its BMCs and VMs would outlive the test.
 */
function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(
    'nsenter',
    [
      `--net=/run/netns/${SRV}`,
      'env',
      'PLINTH_ENDPOINT=http://127.0.0.1:8091',
      `PLINTH_TOKEN=${TOKEN}`,
      process.execPath,
      '--import',
      'tsx',
      path.join(ROOT, 'bin/plinth.js'),
      ...args,
    ],
    { encoding: 'utf8', timeout: 180_000, cwd: ROOT },
  );
  return { code: r.status ?? 1, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Boot = { bootEnv?: string; result?: string; startedAt?: string; events?: unknown[] } & Record<string, unknown>;
const boots = (name: string): Boot[] => {
  const r = api.json('GET', `/api/v1/machines/${name}/boots`);
  return r.status === 200 && Array.isArray(r.body) ? r.body : [];
};

/** What the report needs: each machine's reprovision steps, relative to its start, and its latest boot. */
function timings(label: string, doc: { machines: Array<Record<string, any>> }) {
  for (const m of doc.machines) {
    for (const field of ['run', 'rollback']) {
      const s = m[field];
      if (!s) continue;
      const t0 = Date.parse(s.startedAt);
      const steps = s.steps.map(
        (x: { step: string; at: string }) => `${x.step}+${((Date.parse(x.at) - t0) / 1000).toFixed(1)}s`,
      );
      const end = s.finishedAt ? ((Date.parse(s.finishedAt) - t0) / 1000).toFixed(1) : '?';
      console.log(`[timing] ${label} ${m.name} ${field} ${s.bootEnv}: ${steps.join(' ')} end+${end}s (${s.step})`);
    }
    console.log(`[timeline] ${label} ${m.name} ${JSON.stringify(boots(m.name)[0]).slice(0, 3000)}`);
  }
}

beforeAll(async () => {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  buildImages();
  createNamespace(SRV);
  ({ plinth } = await startPlinth(SRV, WORK, TOKEN, 'http://127.0.0.1:8091'));
  await labBootenv(api, 'lab-a', 'vmlinuz', 'lab-a.img');
  // The broken image: lab-b's initrd, booted without plinth.callback on its command line, so it never calls back.
  await labBootenv(api, 'lab-b', 'vmlinuz', 'lab-b.img');
  const r = api.json('POST', '/api/v1/bootenvs', {
    name: 'lab-broken',
    kernel: 'lab/vmlinuz',
    initrds: ['lab/lab-b.img'],
    bootParams: 'console=ttyS0 quiet panic=-1 BOOTIF=01-${netX/mac:hexhyp}',
    artifacts: [
      { path: 'lab/vmlinuz', sha256: await sha256File(path.join(IMAGES, 'vmlinuz')) },
      { path: 'lab/lab-b.img', sha256: await sha256File(path.join(IMAGES, 'lab-b.img')) },
    ],
  });
  expect(r.status, r.text).toBe(201);
}, 900_000);

afterAll(async () => {
  const down = labDown(LABDIR);
  console.log(`[lab down] ${down.join('; ')}`);
  expect(namespaces()).not.toContain(`plinth-${LAB}`);
  if (plinth) {
    await plinth.stop();
    writeFileSync(path.join(WORK, 'plinth.log'), plinth.output());
  }
  deleteNamespace(SRV);
}, 120_000);

describe('rollouts on lab VMs with BMCs', () => {
  it('rolls the lab bootenv through IPMI and Redfish BMCs, then rolls back a broken one', async () => {
    const up = cli(
      'lab',
      'up',
      '--name',
      LAB,
      '--vms',
      '3',
      '--bootenv',
      'local',
      '--bmc',
      'ipmi,ipmi,redfish',
      '--cidr',
      '10.251.0.1/24',
      '--dir',
      LABDIR,
    );
    expect(up.code, up.stderr + up.stdout).toBe(0);
    expect(up.stdout).toMatch(/lab-vm-1 .* bmc ipmi /);
    expect(up.stdout).toMatch(/lab-vm-3 .* bmc redfish /);
    for (const name of VMS) {
      const m = api.json('GET', `/api/v1/machines/${name}`).body;
      expect(m.bootEnv).toBe('local');
      expect(m.bmc?.driver).toBe(name === 'lab-vm-3' ? 'redfish' : 'ipmi');
      expect(m.bmc?.password).toBe('********');
    }
    // The first PXE (the lab's power-on) is answered with `local`: each VM goes to its empty disk and stays there.
    const until = Date.now() + 300_000;
    while (!VMS.every((n) => boots(n).some((b) => b.bootEnv === 'local')) && Date.now() < until) await sleep(3000);
    expect(VMS.map((n) => boots(n)[0]?.bootEnv)).toEqual(['local', 'local', 'local']);

    // (a) Every VM, one at a time, power-cycled by Plinth with PXE once, boots lab-a and calls back.
    const t0 = Date.now();
    const a = api.json('POST', '/api/v1/rollouts', {
      selector: { namePattern: 'lab-vm-*' },
      bootEnv: 'lab-a',
      batchSize: 1,
      healthTimeout: 600,
      dhcpTimeout: 300,
      onFailure: 'stop',
    });
    expect(a.status, a.text).toBe(201);
    const da = await rolloutEnd(api, a.body.id, 2_400_000);
    console.log(`[timing] rollout a: ${((Date.now() - t0) / 1000).toFixed(1)} s for 3 batches`);
    timings('a', da);
    expect(da.state, JSON.stringify(da)).toBe('done');
    expect(da.batches).toBe(3);
    expect(da.machines.map((m: { result: string }) => m.result)).toEqual(['ok', 'ok', 'ok']);
    for (const name of VMS) {
      const b = boots(name)[0]!;
      expect(b.bootEnv, name).toBe('lab-a');
      expect(b.result, name).toBe('booted');
      const p = api.json('GET', `/api/v1/machines/${name}`).body;
      expect(p.bootEnv).toBe('lab-a');
    }
    const before = Object.fromEntries(VMS.map((n) => [n, boots(n).length]));

    // (b) A bootenv that never calls back: the first batch fails its health gate and is rolled back to lab-a.
    const b = api.json('POST', '/api/v1/rollouts', {
      selector: { namePattern: 'lab-vm-*' },
      bootEnv: 'lab-broken',
      batchSize: 1,
      // The wait for a callback that never comes is most of this test's time; lab-a's rollback boot, which this
      // gate also times, takes 6-31 s here (quiet to loaded).
      healthTimeout: 90,
      dhcpTimeout: 300,
      onFailure: 'rollback',
    });
    expect(b.status, b.text).toBe(201);
    const db = await rolloutEnd(api, b.body.id, 1_800_000);
    timings('b', db);
    expect(db.state, JSON.stringify(db)).toBe('rolled-back');
    const [first, ...rest] = db.machines;
    expect(first.batch).toBe(0);
    expect(first.previousBootEnv).toBe('lab-a');
    expect(first.result, JSON.stringify(first)).toBe('rolled-back');
    expect(first.rollback.step).toBe('done');
    expect(first.reason ?? db.reason).toBeTruthy();
    // It booted lab-broken (no callback), then lab-a again, which called back.
    const fb = boots(first.name);
    expect(fb.length).toBeGreaterThanOrEqual(before[first.name]! + 2);
    expect(fb[0]!.bootEnv).toBe('lab-a');
    expect(fb[0]!.result).toBe('booted');
    expect(fb.slice(0, fb.length - before[first.name]!).some((x) => x.bootEnv === 'lab-broken')).toBe(true);
    expect(api.json('GET', `/api/v1/machines/${first.name}`).body.bootEnv).toBe('lab-a');
    // The others were never touched: no run, still on lab-a, no new boot.
    for (const m of rest) {
      expect(m.run, m.name).toBeUndefined();
      expect(m.result, m.name).toBeUndefined();
      expect(boots(m.name).length, m.name).toBe(before[m.name]);
      expect(api.json('GET', `/api/v1/machines/${m.name}`).body.bootEnv).toBe('lab-a');
    }
  }, 5_400_000);
});
