import {
  appendFileSync,
  closeSync,
  copyFileSync,
  mkdirSync,
  openSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nsCurl } from '../../src/lab/api.js';
import { createNamespace, createSegment, deleteNamespace, type NsProcess, spawnIn } from '../../src/lab/netns.js';
import { BOOTED, buildImages, FAILED, IMAGES, labBootenv, ROOT, startPlinth, vmRunner } from './setup.js';

const NS = 'plinth-e2e-boot';
const SERVER = '10.78.0.1';
const BASE = `http://${SERVER}:8091`;
const TOKEN = 'e2e-admin-token-0123456789abcdefghijkl';
const WORK = path.join(ROOT, '.lab/e2e-boot');
const BOOT_TIMEOUT = 240_000;

const api = nsCurl(NS, BASE, TOKEN);
let plinth: NsProcess;

const { withVm, stopAll } = vmRunner(NS, WORK);

async function bootsOf(id: string) {
  const r = api.json('GET', `/api/v1/machines/${id}/boots`);
  expect(r.status).toBe(200);
  return r.body as {
    bootEnv: string;
    result?: string;
    events: { kind: string; detail: string }[];
    artifacts: { path: string; sha256: string }[];
  }[];
}

beforeAll(async () => {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  buildImages();
  createNamespace(NS);
  createSegment(NS, { cidr: `${SERVER}/24`, taps: 2 });
  ({ plinth } = await startPlinth(NS, WORK, TOKEN, BASE, ['--dhcp-interfaces', 'br0']));

  // Everything below is configuration through the API, as an operator would do it.
  const subnet = {
    name: 'lab',
    subnet: '10.78.0.0/24',
    activeStart: '10.78.0.100',
    activeEnd: '10.78.0.199',
    leaseTime: 600,
  };
  expect(api.json('POST', '/api/v1/subnets', subnet).status).toBe(201);
  // Router solicitations are answered by default (iPXE would otherwise wait ~16 s for IPv6 after each ACK).
  expect(api.json('GET', '/api/v1/prefs').body.answerRouterSolicitations).toBe(true);
  // The shipped discovery bootenv boots these paths.
  expect(api.upload(path.join(IMAGES, 'vmlinuz-generic'), 'discovery/vmlinuz').status).toBeLessThan(300);
  expect(api.upload(path.join(IMAGES, 'discovery.img'), 'discovery/discovery.img').status).toBeLessThan(300);
  await labBootenv(api, 'lab-a', 'vmlinuz', 'lab-a.img');
  await labBootenv(api, 'lab-b', 'vmlinuz', 'lab-b.img');
  await labBootenv(api, 'lab-generic', 'vmlinuz-generic', 'lab-generic.img');
  // lab-t: an initrd of its own (lab-b's plus zero padding, so no other bootenv shares its stored blob), pinned
  // at its real digest; test 6 alters the stored bytes on disk. (A new upload to the path would not do: a
  // bootenv keeps serving the blob it pinned.)
  const tImg = path.join(WORK, 'lab-t.img');
  copyFileSync(path.join(IMAGES, 'lab-b.img'), tImg);
  appendFileSync(tImg, Buffer.alloc(512));
  const own = path.relative(IMAGES, tImg);
  await labBootenv(api, 'lab-t', 'vmlinuz', 'lab-t.img', { uploadFrom: own, pinFrom: own });
}, 900_000);

afterAll(async () => {
  await stopAll();
  if (plinth) {
    await plinth.stop();
    writeFileSync(path.join(WORK, 'plinth.log'), plinth.output());
  }
  deleteNamespace(NS);
});

describe('PXE boot end to end', () => {
  it('1. BIOS, virtio-net, iPXE ROM: a known machine boots lab-a and calls back with its token', async () => {
    const m = api.json('POST', '/api/v1/machines', { name: 'bios-1', macs: ['52:54:00:e2:00:01'], bootEnv: 'lab-a' });
    expect(m.status).toBe(201);
    // An operator watching the event stream while the machine boots.
    const watch = spawnIn(NS, [
      'curl',
      '-sN',
      '-H',
      `Authorization: Bearer ${TOKEN}`,
      `${BASE}/api/v1/events?type=lease.,dhcp.boot,boot.,machine.`,
    ]);
    await withVm('bios-1', '52:54:00:e2:00:01', 'bios', async (v) => {
      const line = await v.waitFor(BOOTED, BOOT_TIMEOUT, FAILED);
      expect(line).toMatch(/image=lab-a mac=52:54:00:e2:00:01 ip=10\.78\.0\.1\d\d/);
      const b = (await bootsOf(m.body.uuid))[0]!;
      expect(b.bootEnv).toBe('lab-a');
      expect(b.result).toBe('booted');
      const kinds = b.events.map((e) => e.kind);
      for (const k of ['dhcp', 'render', 'http', 'callback']) expect(kinds).toContain(k);
      expect(b.events.find((e) => e.kind === 'dhcp')!.detail).toMatch(/iPXE/);
      expect(plinth.output()).toMatch(/"interfaces":\["br0"\],"msg":"dhcp: answering IPv6 router solicitations/);
      expect(b.artifacts.map((a) => a.path)).toEqual(['lab/vmlinuz', 'lab/lab-a.img']);
      await watch.stop();
      const seen = watch
        .output()
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => JSON.parse(l.slice(6)) as { type: string; key?: string; machine?: string; data?: { mac?: string } })
        .filter(
          (e) => e.machine === m.body.uuid || e.data?.mac === '52:54:00:e2:00:01' || e.key === '52:54:00:e2:00:01',
        )
        .map((e) => e.type);
      const at = (t: string) => seen.indexOf(t);
      for (const t of ['dhcp.boot', 'lease.offered', 'lease.acked', 'boot.rendered', 'machine.booted'])
        expect(seen, t).toContain(t);
      expect(at('lease.offered')).toBeLessThan(at('lease.acked'));
      expect(at('dhcp.boot')).toBeLessThan(at('boot.rendered'));
      expect(at('lease.acked')).toBeLessThan(at('boot.rendered'));
      expect(at('boot.rendered')).toBeLessThan(at('machine.booted'));
      const machine = api.json('GET', `/api/v1/machines/${m.body.uuid}`).body;
      expect(machine.address).toMatch(/^10\.78\.0\.1\d\d$/);
    });
  });

  it('2. UEFI with OVMF native PXE: TFTP chainload of ipxe.efi (windowsize granted), then iPXE over HTTP', async () => {
    const m = api.json('POST', '/api/v1/machines', { name: 'uefi-pxe', macs: ['52:54:00:e2:00:02'], bootEnv: 'lab-a' });
    await withVm('uefi-pxe', '52:54:00:e2:00:02', 'uefi-pxe', async (v) => {
      await v.waitFor(BOOTED, BOOT_TIMEOUT, FAILED);
      const b = (await bootsOf(m.body.uuid))[0]!;
      expect(b.result).toBe('booted');
      expect(b.events.some((e) => e.kind === 'tftp' && e.detail.includes('ipxe.efi'))).toBe(true);
      expect(plinth.output()).toMatch(/"file":"ipxe.efi".*"windowsize":4/);
    });
  });

  it('3a. UEFI (OVMF) with the NIC iPXE ROM', async () => {
    api.json('POST', '/api/v1/machines', { name: 'uefi-rom', macs: ['52:54:00:e2:00:03'], bootEnv: 'lab-a' });
    await withVm('uefi-rom', '52:54:00:e2:00:03', 'uefi', async (v) => {
      expect(await v.waitFor(BOOTED, BOOT_TIMEOUT, FAILED)).toContain('image=lab-a');
    });
  });

  it('3c. UEFI HTTP Boot (OVMF, PXE off): option 60 HTTPClient and ipxe.efi over HTTP, then iPXE', async () => {
    const m = api.json('POST', '/api/v1/machines', {
      name: 'uefi-http',
      macs: ['52:54:00:e2:00:05'],
      bootEnv: 'lab-a',
    });
    await withVm('uefi-http', '52:54:00:e2:00:05', 'uefi-http', async (v) => {
      expect(await v.waitFor(BOOTED, BOOT_TIMEOUT, FAILED)).toContain('image=lab-a');
    });
    const b = (await bootsOf(m.body.uuid))[0]!;
    expect(b.events.find((e) => e.kind === 'dhcp')!.detail).toMatch(/UEFI HTTP Boot \(vendor class HTTPClient\)/);
    expect(b.events.some((e) => e.kind === 'http' && e.detail.includes('/files/ipxe.efi'))).toBe(true);
  });

  it('3b. BIOS with an e1000 NIC boots the generic kernel', async () => {
    api.json('POST', '/api/v1/machines', { name: 'bios-e1000', macs: ['52:54:00:e2:00:04'], bootEnv: 'lab-generic' });
    await withVm(
      'bios-e1000',
      '52:54:00:e2:00:04',
      'bios',
      async (v) => {
        expect(await v.waitFor(BOOTED, BOOT_TIMEOUT, FAILED)).toContain('image=lab-generic');
      },
      { nic: 'e1000' },
    );
  });

  it('4. discovery: an unknown machine registers with inventory, gets lab-a assigned and comes up in it', async () => {
    const mac = '52:54:00:e2:00:10';
    await withVm(
      'discovery',
      mac,
      'bios',
      async (v) => {
        // As an operator would: watch the inventory until the machine has reported itself.
        let m: any;
        for (
          const until = Date.now() + BOOT_TIMEOUT;
          Date.now() < until;
          await new Promise((r) => setTimeout(r, 1000))
        ) {
          const list = api.json('GET', `/api/v1/machines?macs=${mac}`).body;
          expect(list.length).toBeLessThanOrEqual(1);
          if (list[0]?.inventory?.cpus) {
            m = list[0];
            break;
          }
          if (!v.running()) throw new Error(`discovery VM stopped: ${v.log().slice(-1500)}`);
        }
        expect(m, `no inventory reported; serial tail: ${v.log().slice(-1500)}`).toBeTruthy();
        // The image prints it after the API answered its report, so the inventory can show before the line does
        // (the serial log lags under software emulation): wait for it rather than read the log once.
        expect(await v.waitFor(/PLINTH-DISCOVERY-REPORTED/, 60_000, FAILED)).toContain(`mac=${mac}`);
        expect(m.bootEnv).toBe('discovery');
        expect(m.inventory).toMatchObject({
          smbiosUuid: '5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b',
          cpus: 1,
          vendor: 'QEMU',
        });
        expect(m.arch).toBe('amd64');
        expect(m.inventory.memoryKiB).toBeGreaterThan(100_000);
        expect(m.inventory.nics.map((n: { mac: string }) => n.mac)).toContain(mac);
        expect(
          api.json('PATCH', `/api/v1/machines/${m.uuid}`, { bootEnv: 'lab-a' }, 'application/merge-patch+json').status,
        ).toBe(200);
        expect(await v.waitFor(BOOTED, BOOT_TIMEOUT, FAILED)).toContain(`image=lab-a mac=${mac}`);
        const boots = await bootsOf(m.uuid);
        expect(boots.map((b) => b.bootEnv)).toEqual(['lab-a', 'discovery']);
      },
      { noReboot: false, uuid: '5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b' },
    );
  });

  it('5. reprovision: assign lab-b, reboot, the machine runs it; its boot history shows both images', async () => {
    expect(
      api.json('PATCH', '/api/v1/machines/bios-1', { bootEnv: 'lab-b' }, 'application/merge-patch+json').status,
    ).toBe(200);
    await withVm('bios-1-again', '52:54:00:e2:00:01', 'bios', async (v) => {
      expect(await v.waitFor(BOOTED, BOOT_TIMEOUT, FAILED)).toContain('image=lab-b');
      const boots = await bootsOf('bios-1');
      expect(boots.map((b) => b.bootEnv).slice(0, 2)).toEqual(['lab-b', 'lab-a']);
      expect(boots[0]!.artifacts[1]!.sha256).not.toBe(boots[1]!.artifacts[1]!.sha256);
    });
  });

  it('6. a tampered artifact is refused with a clear message and the machine does not boot it', async () => {
    const m = api.json('POST', '/api/v1/machines', { name: 'tampered', macs: ['52:54:00:e2:00:06'], bootEnv: 'lab-t' });
    // Someone with access to the disk alters the stored initrd in place (the path and its blob are one inode).
    const fd = openSync(path.join(WORK, 'data/files/lab/lab-t.img'), 'r+');
    writeSync(fd, Buffer.from('tampered'), 0, 8, 1024);
    closeSync(fd);
    await withVm('tampered', '52:54:00:e2:00:06', 'bios', async (v) => {
      await v.waitFor(/refusing to boot lab-t.*/, BOOT_TIMEOUT, BOOTED);
      expect(v.log()).not.toMatch(BOOTED);
      const b = (await bootsOf(m.body.uuid))[0]!;
      expect(b.result).toBe('failed');
      expect(b.events.find((e) => e.kind === 'refused')!.detail).toContain('lab/lab-t.img has sha256');
      expect(plinth.output()).toContain('artifact digest mismatch');
    });
  });
});
