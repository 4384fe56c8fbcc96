/**
 * What the boot end-to-end suites share: the images built from Debian packages, Plinth started inside a
 * namespace with the loaders as its assets, and the lab bootenvs pinned by digest.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { sha256File } from '../../src/files/store-files.js';
import { nsCurl } from '../../src/lab/api.js';
import { type NsProcess, spawnIn } from '../../src/lab/netns.js';
import { type Firmware, startVm, type Vm, type VmOptions } from '../../src/lab/qemu.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const IMAGES = path.join(ROOT, '.lab/images');
export const BOOTED = /PLINTH-LAB-BOOTED image=(\S+) mac=(\S+) ip=(\S+)/;
export const FAILED = /PLINTH-LAB-FAILED.*/;

/**
 * The .debs the images are built from, kept outside the checkout (CI runs in a fresh clone each time): the build
 * itself takes seconds, the downloads do not. PLINTH_LAB_CACHE overrides; a non-root run keeps them under .lab/.
 */
export const DEB_CACHE =
  process.env.PLINTH_LAB_CACHE ?? (process.getuid?.() === 0 ? '/var/cache/plinth/debs' : path.join(ROOT, '.lab/cache'));

/** Kernels, initrds and iPXE loaders from Debian packages (cached .debs: seconds once cached). */
export function buildImages(): void {
  execFileSync('bash', [path.join(ROOT, 'src/lab/build-images.sh'), IMAGES, DEB_CACHE], {
    stdio: 'ignore',
    timeout: 900_000,
  });
}

/** Plinth inside `ns` on its real ports, with `args`; resolves once its API answers. */
export async function startPlinth(ns: string, work: string, token: string, base: string, args: string[] = []) {
  const assets = path.join(work, 'assets');
  mkdirSync(assets, { recursive: true });
  for (const f of ['undionly.kpxe', 'ipxe.efi', 'snponly.efi'])
    copyFileSync(path.join(IMAGES, f), path.join(assets, f));
  const plinth: NsProcess = spawnIn(
    ns,
    [
      process.execPath,
      '--import',
      'tsx',
      path.join(ROOT, 'src/main.ts'),
      '--data-dir',
      path.join(work, 'data'),
      '--assets-dir',
      assets,
      ...args,
    ],
    { cwd: ROOT, env: { ...process.env, PLINTH_TLS: 'off', PLINTH_ADMIN_TOKEN: token, PLINTH_LOG_LEVEL: 'debug' } },
  );
  const api = nsCurl(ns, base, token);
  for (let i = 0; i < 100 && api.get('/api/v1/info').status !== 200; i++) await new Promise((r) => setTimeout(r, 200));
  expect(api.get('/api/v1/info').status, plinth.output()).toBe(200);
  return { plinth, api };
}

// no_timer_check: under software emulation on a loaded host the kernel's IO-APIC timer check can fail and panic.
export const LAB_PARAMS =
  'console=ttyS0 quiet panic=-1 no_timer_check BOOTIF=01-${netX/mac:hexhyp} plinth.callback={{ apiUrl }}/machines/{{ machine.uuid }}/callback?token={{ token }}';

/**
 * Bootenv `name`: uploads the image files `kernel` and `initrd` under lab/ and pins their digests.
 * `uploadFrom` puts other bytes at the initrd's path; `pinFrom` pins another file's digest (a tampered image).
 */
export async function labBootenv(
  api: ReturnType<typeof nsCurl>,
  name: string,
  kernel: string,
  initrd: string,
  opts: { uploadFrom?: string; pinFrom?: string } = {},
) {
  expect(api.upload(path.join(IMAGES, kernel), `lab/${kernel}`).status).toBeLessThan(300);
  expect(api.upload(path.join(IMAGES, opts.uploadFrom ?? initrd), `lab/${initrd}`).status).toBeLessThan(300);
  const r = api.json('POST', '/api/v1/bootenvs', {
    name,
    kernel: `lab/${kernel}`,
    initrds: [`lab/${initrd}`],
    bootParams: LAB_PARAMS,
    artifacts: [
      { path: `lab/${kernel}`, sha256: await sha256File(path.join(IMAGES, kernel)) },
      { path: `lab/${initrd}`, sha256: await sha256File(path.join(IMAGES, opts.pinFrom ?? initrd)) },
    ],
  });
  expect(r.status, r.text).toBe(201);
}

/** VMs on tap0 of `ns`, each stopped (its tap freed) whatever its test does. */
export function vmRunner(ns: string, work: string) {
  const vms: Vm[] = [];
  return {
    async withVm(
      name: string,
      mac: string,
      firmware: Firmware,
      fn: (v: Vm) => Promise<void>,
      extra: Partial<VmOptions> = {},
    ) {
      const v = startVm({
        ns,
        tap: 'tap0',
        mac,
        firmware,
        noReboot: true,
        serialLog: path.join(work, `serial-${name}.log`),
        workDir: work,
        ...extra,
      });
      vms.push(v);
      try {
        await fn(v);
        console.log(`${name}: ${((Date.now() - v.startedAt) / 1000).toFixed(1)} s`);
      } finally {
        await v.stop();
      }
    },
    async stopAll() {
      for (const v of vms) await v.stop();
    },
  };
}

/** Polls a rollout through `api` until it is in a final state or `ms` passes; returns its last document. */
export async function rolloutEnd(api: ReturnType<typeof nsCurl>, id: string, ms: number) {
  const until = Date.now() + ms;
  let doc = api.json('GET', `/api/v1/rollouts/${id}`).body;
  while (!['done', 'failed', 'rolled-back', 'aborted'].includes(doc?.state) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 3000));
    doc = api.json('GET', `/api/v1/rollouts/${id}`).body;
  }
  return doc;
}
