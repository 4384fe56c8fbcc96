/**
 * proxyDHCP end to end: dnsmasq is the segment's address server (no PXE options at all), Plinth stands beside it
 * on another host (its own namespace, joined to the segment by a veth) with a `proxy: true` subnet and gives
 * only boot information, on port 67 and 4011. QEMU boots with SeaBIOS + the iPXE ROM, and with OVMF's own UEFI
 * PXE client (which takes its boot file from the 4011 exchange, then TFTP ipxe.efi from Plinth).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nsCurl } from '../../src/lab/api.js';
import {
  addClientNamespace,
  createNamespace,
  createSegment,
  deleteNamespace,
  type NsProcess,
  spawnIn,
} from '../../src/lab/netns.js';
import { BOOTED, buildImages, FAILED, labBootenv, ROOT, startPlinth, vmRunner } from './setup.js';

const SEG = 'plinth-e2e-pxseg'; // the segment: bridge, taps, dnsmasq at 10.79.5.1
const SRV = 'plinth-e2e-pxsrv'; // Plinth at 10.79.5.2
const TOKEN = 'e2e-proxy-token-0123456789abcdefghijkl';
const WORK = path.join(ROOT, '.lab/e2e-proxy');
const api = nsCurl(SRV, 'http://10.79.5.2:8091', TOKEN);
const { withVm, stopAll } = vmRunner(SEG, WORK);
let plinth: NsProcess;
let dnsmasq: NsProcess;

beforeAll(async () => {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  buildImages();
  createNamespace(SEG);
  createSegment(SEG, { cidr: '10.79.5.1/24', taps: 1 });
  addClientNamespace({ ns: SEG, bridge: 'br0', address: '10.79.5.1', prefix: 24, taps: [] }, SRV, '10.79.5.2/24');
  // The network's own DHCP server: addresses only, no boot options, no DNS (port=0).
  dnsmasq = spawnIn(SEG, [
    'dnsmasq',
    '--no-daemon',
    '--port=0',
    '--interface=br0',
    '--bind-interfaces',
    '--dhcp-authoritative',
    '--dhcp-range=10.79.5.100,10.79.5.150,255.255.255.0,10m',
    `--dhcp-leasefile=${WORK}/dnsmasq.leases`,
    '--log-dhcp',
    '--conf-file=/dev/null',
  ]);
  ({ plinth } = await startPlinth(SRV, WORK, TOKEN, 'http://10.79.5.2:8091'));
  expect(
    api.json('POST', '/api/v1/subnets', { name: 'beside-dnsmasq', subnet: '10.79.5.0/24', proxy: true }).status,
  ).toBe(201);
  await labBootenv(api, 'lab-a', 'vmlinuz', 'lab-a.img');
}, 900_000);

afterAll(async () => {
  await stopAll();
  for (const [p, f] of [
    [plinth, 'plinth.log'],
    [dnsmasq, 'dnsmasq.log'],
  ] as const) {
    if (p) {
      await p.stop();
      writeFileSync(path.join(WORK, f), p.output());
    }
  }
  deleteNamespace(SRV);
  deleteNamespace(SEG);
});

describe('proxyDHCP beside dnsmasq', () => {
  it('BIOS iPXE ROM: address from dnsmasq, boot from Plinth', async () => {
    const m = api.json('POST', '/api/v1/machines', { name: 'px-bios', macs: ['52:54:00:e5:00:01'], bootEnv: 'lab-a' });
    await withVm('px-bios', '52:54:00:e5:00:01', 'bios', async (v) => {
      const line = await v.waitFor(BOOTED, 240_000, FAILED);
      expect(line).toMatch(/image=lab-a .* ip=10\.79\.5\.1[0-5]\d/);
    });
    expect(dnsmasq.output()).toMatch(/DHCPACK\(br0\) 10\.79\.5\.\d+ 52:54:00:e5:00:01/);
    const boots = api.json('GET', `/api/v1/machines/${m.body.uuid}/boots`).body;
    expect(boots[0].result).toBe('booted');
    expect(api.json('GET', '/api/v1/leases').body).toEqual([]); // Plinth handed out no address
  });

  it('OVMF native UEFI PXE: boot file from the 4011 exchange, TFTP ipxe.efi from Plinth, then iPXE over HTTP', async () => {
    api.json('POST', '/api/v1/machines', { name: 'px-uefi', macs: ['52:54:00:e5:00:02'], bootEnv: 'lab-a' });
    await withVm('px-uefi', '52:54:00:e5:00:02', 'uefi-pxe', async (v) => {
      expect(await v.waitFor(BOOTED, 300_000, FAILED)).toContain('image=lab-a');
    });
    expect(plinth.output()).toMatch(/"file":"ipxe.efi"/);
  });
});
