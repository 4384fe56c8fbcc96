/**
 * `plinth lab up --vms 2`: the rehearsal lab boots both VMs from a running Plinth. Plinth runs in a namespace of
 * its own (so its DHCP server never sees this host's interfaces), and the CLI runs there too, exactly as an
 * operator runs it next to the daemon.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256File } from '../../src/files/store-files.js';
import { nsCurl } from '../../src/lab/api.js';
import { labDown } from '../../src/lab/lab.js';
import { createNamespace, deleteNamespace, type NsProcess, namespaces, runIn, spawnIn } from '../../src/lab/netns.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SRV = 'plinth-e2e-labsrv';
const TOKEN = 'e2e-lab-token-0123456789abcdefghijkl';
const WORK = path.join(ROOT, '.lab/e2e-lab');
const IMAGES = path.join(ROOT, '.lab/images');
const LABDIR = path.join(WORK, 'lab');
const api = nsCurl(SRV, 'http://127.0.0.1:8091', TOKEN);
let plinth: NsProcess;

const sha = sha256File;
const cli = (...args: string[]) =>
  runIn(
    SRV,
    [
      'env',
      `PLINTH_ENDPOINT=http://127.0.0.1:8091`,
      `PLINTH_TOKEN=${TOKEN}`,
      process.execPath,
      '--import',
      'tsx',
      path.join(ROOT, 'bin/plinth.js'),
      ...args,
    ],
    120_000,
  );

beforeAll(async () => {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  execFileSync('bash', [path.join(ROOT, 'src/lab/build-images.sh'), IMAGES, path.join(ROOT, '.lab/cache')], {
    stdio: 'ignore',
    timeout: 900_000,
  });
  const assets = path.join(WORK, 'assets');
  mkdirSync(assets, { recursive: true });
  for (const f of ['undionly.kpxe', 'ipxe.efi', 'snponly.efi'])
    copyFileSync(path.join(IMAGES, f), path.join(assets, f));
  createNamespace(SRV);
  plinth = spawnIn(
    SRV,
    [
      process.execPath,
      '--import',
      'tsx',
      path.join(ROOT, 'src/main.ts'),
      '--data-dir',
      path.join(WORK, 'data'),
      '--assets-dir',
      assets,
    ],
    {
      cwd: ROOT,
      env: { ...process.env, PLINTH_ADMIN_TOKEN: TOKEN, PLINTH_LOG_LEVEL: 'info' },
    },
  );
  for (let i = 0; i < 100 && api.get('/api/v1/info').status !== 200; i++) await new Promise((r) => setTimeout(r, 200));
  expect(api.get('/api/v1/info').status, plinth.output()).toBe(200);
  expect(api.upload(path.join(IMAGES, 'vmlinuz'), 'lab/vmlinuz').status).toBeLessThan(300);
  expect(api.upload(path.join(IMAGES, 'lab-a.img'), 'lab/lab-a.img').status).toBeLessThan(300);
  const r = api.json('POST', '/api/v1/bootenvs', {
    name: 'lab-a',
    kernel: 'lab/vmlinuz',
    initrds: ['lab/lab-a.img'],
    bootParams:
      'console=ttyS0 quiet panic=-1 BOOTIF=01-${netX/mac:hexhyp} plinth.callback={{ apiUrl }}/machines/{{ machine.uuid }}/callback?token={{ token }}',
    artifacts: [
      { path: 'lab/vmlinuz', sha256: await sha(path.join(IMAGES, 'vmlinuz')) },
      { path: 'lab/lab-a.img', sha256: await sha(path.join(IMAGES, 'lab-a.img')) },
    ],
  });
  expect(r.status).toBe(201);
}, 900_000);

afterAll(async () => {
  labDown(LABDIR);
  if (plinth) {
    await plinth.stop();
    writeFileSync(path.join(WORK, 'plinth.log'), plinth.output());
  }
  deleteNamespace(SRV);
});

describe('plinth lab', () => {
  it('up --vms 2 boots both VMs from the running Plinth; status shows them; down removes only what it made', async () => {
    const up = cli('lab', 'up', '--vms', '2', '--bootenv', 'lab-a', '--dir', LABDIR);
    expect(up.code, up.stderr + up.stdout).toBe(0);
    expect(up.stdout).toContain('lab-vm-1');
    expect(up.stdout).toContain('lab-vm-2');
    const logs = [1, 2].map((i) => path.join(LABDIR, `serial-lab-vm-${i}.log`));
    const until = Date.now() + 300_000;
    const booted = () =>
      logs.every((f) => existsSync(f) && /PLINTH-LAB-BOOTED image=lab-a/.test(readFileSync(f, 'latin1')));
    while (!booted() && Date.now() < until) await new Promise((r) => setTimeout(r, 1000));
    expect(
      booted(),
      logs.map((f) => (existsSync(f) ? readFileSync(f, 'latin1').slice(-800) : 'no log')).join('\n---\n'),
    ).toBe(true);
    for (const name of ['lab-vm-1', 'lab-vm-2']) {
      const b = api.json('GET', `/api/v1/machines/${name}/boots`).body;
      expect(b[0].result, name).toBe('booted');
      expect(b[0].bootEnv).toBe('lab-a');
    }
    const status = cli('lab', 'status', '--dir', LABDIR);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/lab-vm-1 .*PLINTH-LAB-BOOTED/);
    const down = cli('lab', 'down', '--dir', LABDIR);
    expect(down.code).toBe(0);
    expect(namespaces()).not.toContain('plinth-lab');
    expect(namespaces()).toContain(SRV);
  });
});
