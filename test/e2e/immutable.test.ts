/**
 * The immutable Debian image (src/lab/image/) boots a lab VM from Plinth, end to end, under QEMU software
 * emulation: iPXE fetches kernel and initrd, live-boot's initrd fetches the squashfs root over HTTP into RAM and
 * stacks a tmpfs overlay on it, cloud-init applies the NoCloud seed Plinth renders for the machine, and a unit
 * from that seed calls back `booted` with what the machine runs. Asserted in the serial log (the squashfs
 * download, the read-only squashfs under an overlay root, the squashfs digest, the hostname) and through the API
 * (the boot timeline: renders of the seed files, the callback and the artifacts served).
 * The BIOS VM has a Redfish BMC (Plinth's emulator, QEMU backend): after its first boot on image A, rollouts move
 * it to image B (built from changed inputs: another flavor, on the same cached root) and back to A, and its
 * timeline shows the squashfs digest each boot served and mounted: A, B, A.
 * Beside it, the busybox lab initrd boots on the same segment: the time to callback of both is printed.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nsCurl } from '../../src/lab/api.js';
import { type LabBmc, startRedfishBmc, vmPid } from '../../src/lab/bmc.js';
import { type BuiltImage, buildImage, imageBootenv, imagePrefix } from '../../src/lab/image/image.js';
import { createNamespace, createSegment, deleteNamespace, type NsProcess } from '../../src/lab/netns.js';
import { vmCommand } from '../../src/lab/qemu.js';
import { BOOTED, buildImages, FAILED, labBootenv, ROOT, rolloutEnd, startPlinth, vmRunner } from './setup.js';

const NS = 'plinth-s6img-live';
const SERVER = '10.86.0.1';
const BASE = `http://${SERVER}:8091`;
const TOKEN = 'e2e-admin-token-s6img-0123456789abcdef';
const WORK = path.join(ROOT, '.lab/e2e-immutable');
// Software emulation on a shared 2-core host: a full systemd + cloud-init boot took 12-15 minutes here.
const BOOT_TIMEOUT = 1_800_000;
const LIVE_BOOTED = /PLINTH-LIVE-BOOTED host=(\S+) root=(\S+) squashfs=(\S+) sha256=(\S+) callback=(\S+)/;
const LIVE_FAILED = /Kernel panic|\(initramfs\) |Unable to find a medium containing a live file system/;
const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlinthE2eKeyOnlyForThisTest e2e@plinth';

const api = nsCurl(NS, BASE, TOKEN);
let plinth: NsProcess;
let image: BuiltImage;
let imageB: BuiltImage;
let bmc: LabBmc | undefined;
const { withVm, stopAll } = vmRunner(NS, WORK);

type Boot = {
  bootEnv: string;
  result?: string;
  events: { kind: string; detail: string; data?: Record<string, unknown> }[];
  artifacts: { path: string; sha256: string }[];
};
const bootsOf = (id: string) => api.json('GET', `/api/v1/machines/${id}/boots`).body as Boot[];
const digestIn = (i: BuiltImage, name: string) => i.manifest.artifacts.find((a) => a.name === name)!.sha256;
const digest = (name: string) => digestIn(image, name);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The text of a serial log QEMU writes (its escape sequences stripped), and a wait for a line in it. */
const serial = (file: string) =>
  existsSync(file)
    ? readFileSync(file, 'latin1')
        .replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '')
        .replace(/\r/g, '')
    : '';
async function waitInLog(file: string, re: RegExp, ms: number, fail: RegExp): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const text = serial(file);
    const m = re.exec(text);
    if (m) return text.slice(m.index).split('\n')[0]!;
    const f = fail.exec(text);
    if (f) throw new Error(`${file}: ${text.slice(f.index).split('\n')[0]}`);
    if (Date.now() > until) throw new Error(`${file}: no ${re} within ${ms / 1000} s; tail: ${text.slice(-1500)}`);
    await sleep(1000);
  }
}

/** Uploads a built image under its own directory and creates the bootenv that pins it. */
function registerImage(i: BuiltImage, name: string) {
  const prefix = imagePrefix(i.manifest);
  for (const f of ['vmlinuz', 'initrd.img', 'filesystem.squashfs'])
    expect(api.upload(path.join(i.dir, f), `${prefix}/${f}`).status).toBeLessThan(300);
  const r = api.json('POST', '/api/v1/bootenvs', imageBootenv(i.manifest, name));
  expect(r.status, r.text).toBe(201);
}

beforeAll(async () => {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  buildImages();
  // Cached under /var/cache/plinth/images/<inputs> (PLINTH_IMAGE_CACHE): seconds once built.
  image = buildImage({ quiet: true });
  // Image B: the same inputs but its flavor (a file in the squashfs), built on A's cached root: one mksquashfs.
  imageB = buildImage({ quiet: true, flavor: 'b' });
  createNamespace(NS);
  createSegment(NS, { cidr: `${SERVER}/24`, taps: 2 });
  ({ plinth } = await startPlinth(NS, WORK, TOKEN, BASE, ['--dhcp-interfaces', 'br0']));
  const subnet = {
    name: 'lab',
    subnet: '10.86.0.0/24',
    activeStart: '10.86.0.100',
    activeEnd: '10.86.0.199',
    leaseTime: 600,
  };
  expect(api.json('POST', '/api/v1/subnets', subnet).status).toBe(201);
  await labBootenv(api, 'lab-a', 'vmlinuz', 'lab-a.img');
  registerImage(image, 'debian-live');
  registerImage(imageB, 'debian-live-b');
}, 3_600_000);

afterAll(async () => {
  await stopAll();
  // The BMC emulator and the VM it runs were started here: stopped by their PIDs.
  for (const pid of bmc ? [vmPid(bmc.vmPidFile), bmc.bmcPid] : [])
    if (pid)
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
  if (plinth) {
    await plinth.stop();
    writeFileSync(path.join(WORK, 'plinth.log'), plinth.output());
  }
  deleteNamespace(NS);
});

describe('the immutable Debian image boots from Plinth', () => {
  it('reference: the busybox lab initrd boots to its callback on the same segment', async () => {
    api.json('POST', '/api/v1/machines', { name: 'busybox-ref', macs: ['52:54:00:86:00:01'], bootEnv: 'lab-a' });
    await withVm('busybox-ref', '52:54:00:86:00:01', 'bios', async (v) => {
      expect(await v.waitFor(BOOTED, 300_000, FAILED)).toContain('image=lab-a');
    });
  }, 330_000);

  it(
    'BIOS, powered on by its BMC: squashfs root fetched from Plinth, read-only under a RAM overlay, cloud-init',
    async () => {
      const mac = '52:54:00:86:00:02';
      const dir = path.join(WORK, 'bmc-live-bios');
      const log = path.join(WORK, 'serial-live-bios.log');
      const qemu = vmCommand({
        ns: NS,
        tap: 'tap1',
        mac,
        firmware: 'bios',
        memMiB: 1536,
        serialLog: log,
        workDir: dir,
        boot: false,
      });
      [bmc] = startRedfishBmc({
        ns: NS,
        address: SERVER,
        port: 8000,
        password: 'e2e-bmc-password',
        dir: WORK,
        vms: [{ name: 'live-bios', dir, qemu }],
        plinth: [process.execPath, '--import', 'tsx', path.join(ROOT, 'bin/plinth.js')],
      });
      const m = api.json('POST', '/api/v1/machines', {
        name: 'live-bios',
        macs: [mac],
        bootEnv: 'debian-live',
        params: { 'ssh/authorized-keys': [SSH_KEY] },
        bmc: bmc!.settings,
      });
      expect(m.status, m.text).toBe(201);
      const t0 = Date.now();
      // Through Plinth (in the namespace, where the BMC is): PXE once, then on. The emulator starts under tsx: on
      // a loaded host its first answer can take a minute.
      const until = Date.now() + 180_000;
      while (api.json('POST', '/api/v1/machines/live-bios/power', { action: 'status' }).status !== 200) {
        expect(Date.now() < until, 'the Redfish emulator did not answer within 180 s').toBe(true);
        await sleep(2000);
      }
      const pxe = api.json('POST', '/api/v1/machines/live-bios/power', {
        action: 'bootdev',
        device: 'pxe',
        uefi: false,
      });
      expect(pxe.status, pxe.text).toBe(200);
      const on = api.json('POST', '/api/v1/machines/live-bios/power', { action: 'on' });
      expect(on.status, on.text).toBe(200);
      const line = await waitInLog(log, LIVE_BOOTED, BOOT_TIMEOUT, LIVE_FAILED);
      console.log(`live-bios: ${((Date.now() - t0) / 1000).toFixed(1)} s from power-on to callback`);
      const [, host, root, squashfs, sha256, callback] = LIVE_BOOTED.exec(line)!;
      expect(host).toBe('live-bios');
      expect(root).toBe('overlay');
      expect(squashfs).toBe('ro');
      expect(sha256).toBe(digest('filesystem.squashfs'));
      expect(callback).toBe('ok');
      // live-boot's initrd fetched the root image from Plinth (busybox wget, one GET).
      expect(serial(log)).toContain(`wget ${BASE}/files/${imagePrefix(image.manifest)}/filesystem.squashfs`);
      const b = bootsOf(m.body.uuid)[0]!;
      expect(b.bootEnv).toBe('debian-live');
      expect(b.result).toBe('booted');
      const renders = b.events.filter((e) => e.kind === 'render').map((e) => e.detail);
      for (const f of ['user-data', 'meta-data'])
        expect(renders.some((d) => d.startsWith(`${f} of bootenv debian-live`))).toBe(true);
      const cb = b.events.find((e) => e.kind === 'callback')!;
      expect(cb.data).toMatchObject({ hostname: 'live-bios', root: 'overlay', squashfs: 'ro', sha256, flavor: 'a' });
      expect(b.artifacts.find((a) => a.path.endsWith('filesystem.squashfs'))!.sha256).toBe(sha256);
    },
    BOOT_TIMEOUT + 60_000,
  );

  it(
    'rollouts move the BIOS VM to image B and back to A: each boot served and mounted its own squashfs',
    async () => {
      const [a, b] = [digest('filesystem.squashfs'), digestIn(imageB, 'filesystem.squashfs')];
      expect(b).not.toBe(a);
      const machine = api.json('GET', '/api/v1/machines/live-bios');
      expect(machine.status, machine.text).toBe(200);
      const uuid = machine.body.uuid as string;
      for (const bootEnv of ['debian-live-b', 'debian-live']) {
        const t0 = Date.now();
        const r = api.json('POST', '/api/v1/rollouts', {
          selector: { machines: ['live-bios'] },
          bootEnv,
          batchSize: 1,
          healthTimeout: BOOT_TIMEOUT / 1000,
          dhcpTimeout: 600,
          onFailure: 'stop',
        });
        expect(r.status, r.text).toBe(201);
        const doc = await rolloutEnd(api, r.body.id, BOOT_TIMEOUT + 300_000);
        console.log(`rollout to ${bootEnv}: ${((Date.now() - t0) / 1000).toFixed(1)} s (${doc.state})`);
        expect(doc.state, JSON.stringify(doc)).toBe('done');
        expect(doc.machines.map((x: { result: string }) => x.result)).toEqual(['ok']);
      }
      // The timeline, oldest first: what each boot served (its pinned squashfs) and what the machine mounted.
      const booted = bootsOf(uuid)
        .filter((x) => x.result === 'booted')
        .reverse();
      const seen = booted.map((x) => {
        const cb = x.events.find((e) => e.kind === 'callback')?.data;
        // The address the boot's first DHCP exchange (iPXE's) got: the booted system asks with the MAC as its
        // client identifier (ClientIdentifier=mac in the image), so it keeps that address.
        const first = x.events.map((e) => /^lease (\S+) acknowledged/.exec(e.detail)?.[1]).find(Boolean);
        return {
          bootEnv: x.bootEnv,
          served: x.artifacts.find((p) => p.path.endsWith('filesystem.squashfs'))?.sha256,
          mounted: cb?.sha256,
          flavor: cb?.flavor,
          sameAddress: first !== undefined && cb?.ip === first,
        };
      });
      console.log(`[timeline] live-bios ${JSON.stringify(seen)}`);
      expect(seen.slice(-3)).toEqual([
        { bootEnv: 'debian-live', served: a, mounted: a, flavor: 'a', sameAddress: true },
        { bootEnv: 'debian-live-b', served: b, mounted: b, flavor: 'b', sameAddress: true },
        { bootEnv: 'debian-live', served: a, mounted: a, flavor: 'a', sameAddress: true },
      ]);
      // The VM is done: its CPU goes to the UEFI VM (the BMC emulator stays up until afterAll).
      const pid = vmPid(bmc!.vmPidFile);
      if (pid) process.kill(pid, 'SIGKILL');
    },
    2 * (BOOT_TIMEOUT + 360_000),
  );

  it(
    'UEFI (OVMF, the NIC iPXE ROM): the same bootenv, unchanged, boots and calls back',
    async () => {
      const m = api.json('POST', '/api/v1/machines', {
        name: 'live-uefi',
        macs: ['52:54:00:86:00:03'],
        bootEnv: 'debian-live',
      });
      expect(m.status, m.text).toBe(201);
      await withVm(
        'live-uefi',
        '52:54:00:86:00:03',
        'uefi',
        async (v) => {
          const line = await v.waitFor(LIVE_BOOTED, BOOT_TIMEOUT, LIVE_FAILED);
          expect(line).toMatch(
            new RegExp(`host=live-uefi root=overlay squashfs=ro sha256=${digest('filesystem.squashfs')} callback=ok`),
          );
          expect(bootsOf(m.body.uuid)[0]!.result).toBe('booted');
        },
        { memMiB: 1536 },
      );
    },
    BOOT_TIMEOUT + 60_000,
  );
});
