/**
 * Operator firmware quirks end to end: set through the API as the `firmwareQuirks` pref, they change the loader
 * the daemon's DHCP server offers from the next request on (no restart), and the reason names the entry.
 * The DHCP server answers on a high port and every reply is redirected to loopback, as in test/dhcp.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import type { PlinthEvent } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import { listener, ports, request } from '../dhcp/helpers.js';
import { testConfig } from '../helpers/daemon.js';

let daemon: Daemon;
let dataDir: string;
let client: Awaited<ReturnType<typeof listener>>;
let api: (method: string, p: string, body?: unknown) => Promise<{ status: number; body: any }>;
const p = ports();
const events: PlinthEvent[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-quirks-'));
  daemon = await startDaemon(
    testConfig(dataDir, { dhcp: true, dhcpPort: p.port, dhcpProxyPort: p.proxyPort, advertiseAddress: '10.99.1.1' }),
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
  daemon.bus.on((e) => events.push(e));
  client = await listener(p.clientPort);
  const token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
  api = async (method, u, body) => {
    const r = await fetch(`http://127.0.0.1:${daemon.httpPort}${u}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : undefined };
  };
  const s = await api('POST', '/api/v1/subnets', {
    name: 'lab',
    subnet: '10.99.1.0/24',
    activeStart: '10.99.1.100',
    activeEnd: '10.99.1.199',
  });
  expect(s.status).toBe(201);
});
afterAll(async () => {
  await client?.close();
  await daemon?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** A UEFI x86-64 PXE DISCOVER (option 93 = 7, option 60 PXEClient); returns the OFFER's file and reason. */
async function discover(mac: string) {
  const d = request(MessageType.DISCOVER, mac, { flags: 0x8000 }, [
    [Opt.ClientArch, Buffer.from([0, 7])],
    [Opt.VendorClass, Buffer.from('PXEClient:Arch:00007:UNDI:003000')],
  ]);
  // The subnet is loaded in the background after its creation: ask until the server answers.
  for (let i = 0; i < 20; i++) {
    await client.send(d, p.port);
    const offer = await client.wait(d.xid, 250);
    if (offer) {
      const boot = events.filter((e) => e.type === 'dhcp.boot' && e.key === mac).at(-1);
      return { file: offer.file, reason: boot?.data?.reason as string, blksize: boot?.data?.blksize };
    }
  }
  throw new Error(`no OFFER for ${mac}`);
}

describe('operator firmware quirks through the API', () => {
  it('a firmwareQuirks pref changes the loader of the next DISCOVER, and the boot timeline says why', async () => {
    const mac = '52:54:00:ab:00:01';
    const m = await api('POST', '/api/v1/machines', { name: 'nic-x', macs: [mac], bootEnv: 'local' });
    expect(m.status).toBe(201);
    expect((await discover(mac)).file).toBe('ipxe.efi');

    const set = await api('PATCH', '/api/v1/prefs', {
      firmwareQuirks: [
        {
          match: { macPrefix: '52:54:00:AB', arch: 7 },
          loader: 'snponly.efi',
          blksize: 1024,
          why: 'NIC X UEFI driver: ipxe.efi hangs, snponly.efi works',
        },
      ],
    });
    expect(set.status).toBe(200);
    expect(set.body.firmwareQuirks[0].match.macPrefix).toBe('52:54:00:ab');

    const after = await discover(mac);
    expect(after.file).toBe('snponly.efi');
    expect(after.blksize).toBe(1024);
    expect(after.reason).toMatch(
      /quirk: snponly.efi instead \(NIC X UEFI driver: ipxe.efi hangs, snponly.efi works\) \[prefs firmwareQuirks\[0\]\]/,
    );
    await expect
      .poll(async () =>
        (await api('GET', `/api/v1/machines/${m.body.uuid}/boots`)).body[0]?.events.map(
          (e: { detail: string }) => e.detail,
        ),
      )
      .toEqual(
        expect.arrayContaining([expect.stringMatching(/^offered snponly.efi: .*\[prefs firmwareQuirks\[0\]\]/)]),
      );
    // Another MAC is not matched.
    expect((await discover('52:54:00:cd:00:01')).file).toBe('ipxe.efi');

    // Removing the entry takes effect the same way.
    expect((await api('PATCH', '/api/v1/prefs', { firmwareQuirks: [] })).status).toBe(200);
    expect((await discover(mac)).file).toBe('ipxe.efi');
  });

  it('an operator entry overrides the built-in one (Hyper-V Gen2: snponly.efi)', async () => {
    const mac = '00:15:5d:00:00:07';
    const before = await discover(mac);
    expect(before.file).toBe('snponly.efi');
    expect(before.reason).toMatch(/\[built-in\]/);
    const set = await api('PATCH', '/api/v1/prefs', {
      firmwareQuirks: [{ match: { macPrefix: '00:15:5d' }, loader: 'ipxe.efi', why: 'our iPXE build has the driver' }],
    });
    expect(set.status).toBe(200);
    const after = await discover(mac);
    expect(after.file).toBe('ipxe.efi');
    expect(after.reason).toMatch(
      /quirk: ipxe.efi instead \(our iPXE build has the driver\) \[prefs firmwareQuirks\[0\]\]/,
    );
    await api('PATCH', '/api/v1/prefs', { firmwareQuirks: [] });
  });

  it('a wrong entry is refused with 400 naming each field, and the table in use is unchanged', async () => {
    const r = await api('PATCH', '/api/v1/prefs', {
      firmwareQuirks: [
        { match: { arch: 7 }, blksize: 1024, why: 'fine' },
        { match: {}, loader: '../../etc/passwd', blksize: 4 },
      ],
    });
    expect(r.status).toBe(400);
    expect(r.body.detail).toMatch(/^prefs is not valid: firmwareQuirks\.1\./);
    expect(r.body.errors.map((e: { path: string }) => e.path)).toEqual(
      expect.arrayContaining([
        'firmwareQuirks.1.match',
        'firmwareQuirks.1.loader',
        'firmwareQuirks.1.blksize',
        'firmwareQuirks.1.why',
      ]),
    );
    expect((await api('GET', '/api/v1/prefs')).body.firmwareQuirks).toEqual([]);
    expect((await discover('52:54:00:ab:00:02')).blksize).toBeUndefined();
  });

  it('the OpenAPI document describes the pref and the subnet field', async () => {
    const doc = (await api('GET', '/api/v1/openapi.json')).body;
    const prefs = JSON.stringify(doc.components.schemas.Prefs);
    expect(prefs).toMatch(/firmwareQuirks/);
    expect(prefs).toMatch(/macPrefix/);
    expect(JSON.stringify(doc.components.schemas.Subnet)).toMatch(/tftpMaxBlksize/);
  });
});
