/**
 * The immutable Debian image (src/lab/image/) boots a lab VM from Plinth, end to end, under QEMU software
 * emulation: iPXE fetches kernel and initrd, live-boot's initrd fetches the squashfs root over HTTP into RAM and
 * stacks a tmpfs overlay on it, cloud-init applies the NoCloud seed Plinth renders for the machine, and a unit
 * from that seed calls back `booted` with what the machine runs. Asserted in the serial log (the squashfs
 * download, the read-only squashfs under an overlay root, the squashfs digest, the hostname) and through the API
 * (the boot timeline: renders of the seed files, the callback and the artifacts served).
 * Beside it, the busybox lab initrd boots on the same segment: the time to callback of both is printed.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nsCurl } from '../../src/lab/api.js';
import { type BuiltImage, buildImage, imageBootenv, imagePrefix } from '../../src/lab/image/image.js';
import { createNamespace, createSegment, deleteNamespace, type NsProcess } from '../../src/lab/netns.js';
import { BOOTED, buildImages, FAILED, labBootenv, ROOT, startPlinth, vmRunner } from './setup.js';

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
const { withVm, stopAll } = vmRunner(NS, WORK);

type Boot = {
  bootEnv: string;
  result?: string;
  events: { kind: string; detail: string; data?: Record<string, unknown> }[];
  artifacts: { path: string; sha256: string }[];
};
const bootsOf = (id: string) => api.json('GET', `/api/v1/machines/${id}/boots`).body as Boot[];
const digest = (name: string) => image.manifest.artifacts.find((a) => a.name === name)!.sha256;

beforeAll(async () => {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  buildImages();
  // Cached under /var/cache/plinth/images/<inputs> (PLINTH_IMAGE_CACHE): seconds once built.
  image = buildImage({ quiet: true });
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
  const prefix = imagePrefix(image.manifest);
  for (const f of ['vmlinuz', 'initrd.img', 'filesystem.squashfs'])
    expect(api.upload(path.join(image.dir, f), `${prefix}/${f}`).status).toBeLessThan(300);
  const r = api.json('POST', '/api/v1/bootenvs', imageBootenv(image.manifest, 'debian-live'));
  expect(r.status, r.text).toBe(201);
}, 3_600_000);

afterAll(async () => {
  await stopAll();
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
    'BIOS: squashfs root fetched from Plinth, read-only under a RAM overlay, configured by cloud-init',
    async () => {
      const m = api.json('POST', '/api/v1/machines', {
        name: 'live-bios',
        macs: ['52:54:00:86:00:02'],
        bootEnv: 'debian-live',
        params: { 'ssh/authorized-keys': [SSH_KEY] },
      });
      expect(m.status, m.text).toBe(201);
      await withVm(
        'live-bios',
        '52:54:00:86:00:02',
        'bios',
        async (v) => {
          const line = await v.waitFor(LIVE_BOOTED, BOOT_TIMEOUT, LIVE_FAILED);
          const [, host, root, squashfs, sha256, callback] = LIVE_BOOTED.exec(line)!;
          expect(host).toBe('live-bios');
          expect(root).toBe('overlay');
          expect(squashfs).toBe('ro');
          expect(sha256).toBe(digest('filesystem.squashfs'));
          expect(callback).toBe('ok');
          const log = v.log();
          // live-boot's initrd fetched the root image from Plinth (busybox wget, one GET).
          expect(log).toContain(`wget ${BASE}/files/${imagePrefix(image.manifest)}/filesystem.squashfs`);
          const b = bootsOf(m.body.uuid)[0]!;
          expect(b.bootEnv).toBe('debian-live');
          expect(b.result).toBe('booted');
          const renders = b.events.filter((e) => e.kind === 'render').map((e) => e.detail);
          for (const f of ['user-data', 'meta-data'])
            expect(renders.some((d) => d.startsWith(`${f} of bootenv debian-live`))).toBe(true);
          const cb = b.events.find((e) => e.kind === 'callback')!;
          expect(cb.data).toMatchObject({ hostname: 'live-bios', root: 'overlay', squashfs: 'ro', sha256 });
          expect(b.artifacts.find((a) => a.path.endsWith('filesystem.squashfs'))!.sha256).toBe(sha256);
        },
        { memMiB: 1536 },
      );
    },
    BOOT_TIMEOUT + 60_000,
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
