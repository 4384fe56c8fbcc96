/**
 * A firmware quirk's blksize cap reaches a proxyDHCP client's TFTP transfer (issue 12, item 3). In proxy mode no
 * lease is acknowledged: the client's address comes with the boot offer itself (the ciaddr of its port-4011
 * REQUEST), recorded as a boot session, and the daemon's TFTP source returns the cap with the file it opens.
 *
 * The first test drives the boot sessions and the daemon's TFTP source directly. The second drives a real daemon
 * in proxy mode on loopback: a PXE DISCOVER, a 4011 REQUEST with ciaddr, then a TFTP RRQ asking blksize 1468,
 * answered with an OACK of the quirk's 1024. It needs the DHCP server's `onBoot` callback (the DHCP rework of
 * issue 12): before that merge the daemon's DHCP server records no session and it fails at the last OACK.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { silentLogger } from '../../src/log.js';
import { listener, ports, request } from '../dhcp/helpers.js';
import { testConfig } from '../helpers/daemon.js';
import { tftpGet } from '../tftp/client.js';

const MAC = '52:54:00:bb:00:01';
const PXE: [number, Buffer][] = [
  [Opt.VendorClass, Buffer.from('PXEClient:Arch:00007:UNDI:003016')],
  [Opt.ClientArch, Buffer.from([0, 7])],
];
const body = Buffer.alloc(5000, 'p');

let daemon: Daemon;
let dataDir: string;
let tftpPort: number;
let api: (method: string, p: string, body?: unknown) => Promise<{ status: number; body: any }>;
const p = ports();

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-blk-proxy-'));
  daemon = await startDaemon(
    testConfig(dataDir, {
      dhcp: true,
      dhcpPort: p.port,
      dhcpProxyPort: p.proxyPort,
      advertiseAddress: '10.99.1.1',
      tftp: true,
      tftpPort: 0,
    }),
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
  const token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
  api = async (method, u, b) => {
    const r = await fetch(`http://127.0.0.1:${daemon.httpPort}${u}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(b ? { 'content-type': 'application/json' } : {}) },
      body: b === undefined ? undefined : typeof b === 'string' || Buffer.isBuffer(b) ? b : JSON.stringify(b),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : undefined };
  };
  tftpPort = (await api('GET', '/api/v1/info')).body.listeners.tftp.port;
  expect((await api('PUT', '/api/v1/files/snponly.efi', body)).status).toBe(201);
  // A proxyDHCP subnet (the network's own DHCP server hands out addresses) and a quirk for this NIC's firmware.
  const s = await api('POST', '/api/v1/subnets', { name: 'lab', subnet: '10.99.1.0/24', proxy: true });
  expect(s.status).toBe(201);
  const q = await api('PATCH', '/api/v1/prefs', {
    firmwareQuirks: [
      {
        match: { macPrefix: '52:54:00:bb', arch: 7 },
        loader: 'snponly.efi',
        blksize: 1024,
        why: 'NIC B UEFI TFTP stalls with blocks over 1024 bytes',
      },
    ],
  });
  expect(q.status).toBe(200);
});
afterAll(async () => {
  await daemon?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** The blksize granted to a client on 127.0.0.1 asking 1468 for the loader, checked against the blocks sent. */
async function granted(): Promise<number> {
  const r = await tftpGet(tftpPort, 'snponly.efi', { options: [['blksize', '1468']] });
  expect(r.error).toBeUndefined();
  expect(r.data.equals(body)).toBe(true);
  const blksize = Number(r.oack?.find(([k]) => k === 'blksize')?.[1]);
  expect(r.dataPackets).toBe(Math.floor(body.length / blksize) + 1);
  return blksize;
}

describe('a quirk blksize cap reaches a proxyDHCP client', () => {
  it('through the boot sessions and the daemon TFTP source (recorded proxy offer, address from ciaddr)', async () => {
    const address = '127.0.0.2';
    expect((await tftpGet(tftpPort, 'snponly.efi', { from: address, options: [['blksize', '1468']] })).oack).toEqual([
      ['blksize', '1468'],
    ]);
    daemon.sessions.record({
      mac: '52:54:00:bb:00:02',
      address,
      mode: 'proxy',
      arch: 7,
      vendorClass: 'PXEClient:Arch:00007:UNDI:003016',
      bootEnv: 'discovery',
      filename: 'snponly.efi',
      reason: 'quirk',
      blksize: { value: 1024, why: 'NIC B UEFI TFTP stalls with blocks over 1024 bytes [prefs firmwareQuirks[0]]' },
    });
    const r = await tftpGet(tftpPort, 'snponly.efi', { from: address, options: [['blksize', '1468']] });
    expect(r.oack).toEqual([['blksize', '1024']]);
    expect(r.data.equals(body)).toBe(true);
    // Not another client: the cap is this address's.
    expect(await granted()).toBe(1468);
  });

  // NEEDS THE MERGE with the DHCP rework (the DHCP server calling `onBoot`): fails before it.
  it('end to end on loopback: PXE DISCOVER, 4011 REQUEST with ciaddr, TFTP OACK of the capped blksize', async () => {
    const client = await listener(p.clientPort);
    const c4011 = await listener(p.clientPort + 10);
    try {
      // The quirk table reloads in the background after the prefs change: the loader it picks says it is in use.
      let offered = false;
      for (let i = 0; i < 20 && !offered; i++) {
        const d = request(MessageType.DISCOVER, MAC, { flags: 0x8000 }, PXE);
        await client.send(d, p.port);
        offered = (await client.wait(d.xid, 250)) !== undefined;
      }
      expect(offered).toBe(true);
      // The proxy OFFER names no address: the TFTP client is not capped yet.
      expect(await granted()).toBe(1468);
      let ack: Awaited<ReturnType<typeof c4011.wait>>;
      for (let i = 0; i < 20; i++) {
        const r = request(MessageType.REQUEST, MAC, { ciaddr: '127.0.0.1' }, PXE);
        await c4011.send(r, p.proxyPort);
        ack = await c4011.wait(r.xid, 250);
        if (ack?.file === 'snponly.efi') break;
      }
      expect(ack!.file).toBe('snponly.efi');
      expect(await granted()).toBe(1024);
    } finally {
      await client.close();
      await c4011.close();
    }
  });
});
