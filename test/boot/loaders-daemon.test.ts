/**
 * Loaders found, end to end: with the loaders only in a fake distribution directory (--loader-search) and an
 * empty --assets-dir, the daemon offers them, serves them over TFTP from where they are and lists them in
 * /api/v1/info; with none anywhere, a UEFI PXE DISCOVER gets an address but no boot file, and the decision's
 * reason names the missing loader. DHCP answers on a high port with replies redirected to loopback (test/dhcp).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Arch, decideBoot } from '../../src/boot/decide.js';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { silentLogger } from '../../src/log.js';
import { loaderIndex } from '../../src/provision/loaders.js';
import { listener, ports, request } from '../dhcp/helpers.js';
import { testConfig } from '../helpers/daemon.js';
import { tftpGet } from '../tftp/client.js';

type Lab = {
  daemon: Daemon;
  dataDir: string;
  client: Awaited<ReturnType<typeof listener>>;
  p: ReturnType<typeof ports>;
};

let root: string;
const labs: Lab[] = [];

async function lab(assetsDir: string, loaderSearch: string[]): Promise<Lab> {
  const dataDir = mkdtempSync(path.join(root, 'data-'));
  const p = ports();
  const cfg = {
    dhcp: true,
    dhcpPort: p.port,
    dhcpProxyPort: p.proxyPort,
    tftp: true,
    tftpPort: 0,
    advertiseAddress: '10.99.2.1',
    assetsDir,
    loaderSearch,
  };
  const daemon = await startDaemon(
    testConfig(dataDir, cfg),
    silentLogger,
    {},
    {
      dhcp: {
        wildcard: true,
        clientPort: p.clientPort,
        relayPort: p.relayPort,
        replyTo: (d) => ({ address: '127.0.0.1', port: d.port }),
      },
    },
  );
  const client = await listener(p.clientPort);
  const l = { daemon, dataDir, client, p };
  labs.push(l);
  const s = await api(l, 'POST', '/api/v1/subnets', {
    name: 'lab',
    subnet: '10.99.2.0/24',
    activeStart: '10.99.2.100',
    activeEnd: '10.99.2.199',
  });
  expect(s.status).toBe(201);
  return l;
}

async function api(l: Lab, method: string, u: string, body?: unknown) {
  const token = readFileSync(path.join(l.dataDir, 'admin.token'), 'utf8').trim();
  const r = await fetch(`http://127.0.0.1:${l.daemon.httpPort}${u}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined };
}

/** A PXE DISCOVER of this arch; returns the OFFER's boot file ('' when none). */
async function discover(l: Lab, mac: string, arch: number): Promise<string> {
  const d = request(MessageType.DISCOVER, mac, { flags: 0x8000 }, [
    [Opt.ClientArch, Buffer.from([0, arch])],
    [Opt.VendorClass, Buffer.from(`PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:003000`)],
  ]);
  // The subnet is loaded in the background after its creation: ask until the server answers.
  for (let i = 0; i < 20; i++) {
    await l.client.send(d, l.p.port);
    const offer = await l.client.wait(d.xid, 250);
    if (offer) return offer.file;
  }
  throw new Error(`no OFFER for ${mac}`);
}

beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'plinth-loaders-d-'));
});
afterAll(async () => {
  for (const l of labs) {
    await l.client.close();
    await l.daemon.close();
  }
  rmSync(root, { recursive: true, force: true });
});

describe('loaders found in the distribution', () => {
  it('are offered, served over TFTP from where they are, and listed in /info', async () => {
    const assets = path.join(root, 'assets-empty');
    const distro = path.join(root, 'usr-lib-ipxe');
    const boot = path.join(root, 'boot');
    for (const d of [assets, distro, boot]) mkdirSync(d);
    const bios = Buffer.alloc(3000, 0xbb);
    writeFileSync(path.join(distro, 'undionly.kpxe'), bios);
    // Debian: /boot/ipxe.efi, and /usr/lib/ipxe/ipxe.efi a symlink to it.
    writeFileSync(path.join(boot, 'ipxe.efi'), Buffer.alloc(5000, 0xee));
    symlinkSync(path.join(boot, 'ipxe.efi'), path.join(distro, 'ipxe.efi'));
    writeFileSync(path.join(distro, 'ipxe.iso'), 'not a loader');
    const l = await lab(assets, [distro, path.join(boot, 'ipxe.efi')]);

    const info = await api(l, 'GET', '/api/v1/info');
    expect(info.body.loaders.served).toEqual([
      { name: 'undionly.kpxe', path: path.join(distro, 'undionly.kpxe'), source: 'distribution' },
      { name: 'ipxe.efi', path: path.join(boot, 'ipxe.efi'), source: 'distribution' },
    ]);
    expect(info.body.loaders.missing).toEqual(['snponly.efi', 'ipxe-arm64.efi']);

    const tftpPort = info.body.listeners.tftp.port;
    expect((await tftpGet(tftpPort, 'undionly.kpxe')).data.equals(bios)).toBe(true);
    expect((await tftpGet(tftpPort, 'ipxe.efi')).data.length).toBe(5000);
    // The rest of the distribution's directory is not served.
    expect((await tftpGet(tftpPort, 'ipxe.iso')).error?.code).toBe(1);

    expect(await discover(l, '52:54:00:d1:00:01', Arch.EfiBc)).toBe('ipxe.efi');
    expect(await discover(l, '52:54:00:d1:00:02', Arch.BiosX86)).toBe('undionly.kpxe');
    // No arm64 loader anywhere: an address, no boot file.
    expect(await discover(l, '52:54:00:d1:00:03', Arch.EfiArm64)).toBe('');
  });

  it('with none anywhere, a UEFI DISCOVER gets no boot file and the reason names the missing loader', async () => {
    const empty = path.join(root, 'nothing');
    mkdirSync(empty);
    const l = await lab(empty, [path.join(root, 'no-such-dir'), path.join(root, 'no-such.efi')]);
    const info = await api(l, 'GET', '/api/v1/info');
    expect(info.body.loaders).toEqual({
      served: [],
      missing: ['undionly.kpxe', 'ipxe.efi', 'snponly.efi', 'ipxe-arm64.efi'],
    });
    expect(await discover(l, '52:54:00:d2:00:01', Arch.EfiBc)).toBe('');
    expect(await discover(l, '52:54:00:d2:00:02', Arch.BiosX86)).toBe('');

    // The same index, as the DHCP server asks it: the decision's reason says which loader and what to do.
    const has = loaderIndex({ assetsDir: empty, search: [] }).has;
    const facts = {
      mac: '52:54:00:d2:00:01',
      prefs: { unknownBootEnv: 'discovery' },
      server: { address: '10.99.2.1', httpPort: 80 },
      mode: 'full' as const,
      hasLoader: has,
    };
    const uefi = decideBoot({ ...facts, arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003000' });
    expect(uefi.boot).toBe(false);
    expect(uefi.reason).toMatch(/the boot loader ipxe\.efi is missing .*install the ipxe package/);
    const httpBoot = decideBoot({ ...facts, arch: 16, vendorClass: 'HTTPClient:Arch:00016:UNDI:003000' });
    expect(httpBoot.reason).toMatch(/ipxe\.efi is missing/);
    const bios = decideBoot({ ...facts, arch: 0, vendorClass: 'PXEClient:Arch:00000:UNDI:002001' });
    expect(bios.reason).toMatch(/undionly\.kpxe is missing/);
    // A quirk's loader is checked too (Hyper-V Gen2 gets snponly.efi).
    const quirk = decideBoot({
      ...facts,
      mac: '00:15:5d:00:00:01',
      arch: 7,
      vendorClass: 'PXEClient:Arch:00007:UNDI:003000',
      hasLoader: (n) => n === 'ipxe.efi',
    });
    expect(quirk.boot).toBe(false);
    expect(quirk.reason).toMatch(/snponly\.efi is missing/);
    // iPXE itself needs no loader: the script over HTTP.
    expect(decideBoot({ ...facts, arch: 7, userClass: ['iPXE'] }).boot).toBe(true);
  });
});
