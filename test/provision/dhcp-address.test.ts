/**
 * A machine's address and lastSeen come from this daemon's DHCP only: a lease ACK, or in proxyDHCP mode the
 * answered boot-server REQUEST (`proxy.acked`, emitted by the proxy server); never from an HTTP GET.
 */

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { createLogger } from '../../src/log.js';
import { ip4, listener, ports, request } from '../dhcp/helpers.js';
import { testConfig } from '../helpers/daemon.js';

let daemon: Daemon;
let dataDir: string;
let token: string;
const p = ports();
const url = (u: string) => `http://127.0.0.1:${daemon.httpPort}${u}`;
const api = async (method: string, u: string, body?: unknown) => {
  const r = await fetch(url(u), {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: r.status, body: (await r.json()) as any };
};

/** A GET from a chosen loopback source address (Linux routes all of 127/8 to lo). */
const getFrom = (localAddress: string, u: string) =>
  new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: daemon.httpPort, path: u, localAddress }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
  });

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-address-'));
  daemon = await startDaemon(
    testConfig(dataDir, { dhcp: true, dhcpPort: p.port, dhcpProxyPort: p.proxyPort }),
    createLogger(process.env.DBG ? 'debug' : 'silent'),
    {},
    {
      dhcp: {
        wildcard: true,
        clientPort: p.clientPort,
        relayPort: p.relayPort,
        // Never answer on a real interface: every reply goes to loopback.
        replyTo: (d) => ({ address: '127.0.0.1', port: d.port }),
      },
    },
  );
  token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
});
afterAll(async () => {
  await daemon?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('machine address from DHCP evidence only', () => {
  it('an HTTP GET does not set it; a proxyDHCP boot-server ACK does, and the timeline says so', async () => {
    const m = await api('POST', '/api/v1/machines', { name: 'px-1', macs: ['52:54:00:e6:00:01'] });
    expect(m.status).toBe(201);
    expect((await fetch(url('/boot/ipxe/52:54:00:e6:00:01'))).status).toBe(200);
    expect((await api('GET', `/api/v1/machines/${m.body.uuid}`)).body.address).toBeUndefined();
    daemon.bus.emit({ type: 'proxy.acked', key: '10.79.5.23', data: { mac: '52:54:00:e6:00:01', subnet: 'seg' } });
    await expect
      .poll(async () => (await api('GET', `/api/v1/machines/${m.body.uuid}`)).body.address)
      .toBe('10.79.5.23');
    const after = (await api('GET', `/api/v1/machines/${m.body.uuid}`)).body;
    expect(after.lastSeen).toBeDefined();
    // The timeline is written after the address (its own write): wait for it rather than race it.
    const details = async () =>
      ((await api('GET', `/api/v1/machines/${m.body.uuid}/boots`)).body[0]?.events ?? []).map(
        (e: { detail: string }) => e.detail,
      );
    await expect.poll(details).toContain('proxyDHCP boot-server request from 10.79.5.23 answered (subnet seg)');
  });
});

describe('discovery after a real DHCP exchange with this daemon', () => {
  it('a relayed DORA for 127.0.0.20, then GET /boot/ipxe/<mac> from there: registered, with a working token', async () => {
    const s = await api('POST', '/api/v1/subnets', {
      name: 'loop',
      subnet: '127.0.0.0/8',
      // 127.0.0.1 is this server's own address: never handed out.
      activeStart: '127.0.0.20',
      activeEnd: '127.0.0.20',
    });
    expect(s.status).toBe(201);
    const mac = '52:54:00:e6:00:02';
    // Before any DHCP: served anonymously, nothing registered.
    expect((await getFrom('127.0.0.20', `/boot/ipxe/${mac}?arch=x86_64`)).status).toBe(200);
    expect((await api('GET', `/api/v1/machines?macs=${mac}`)).body).toEqual([]);

    const relay = await listener(p.relayPort);
    try {
      const ask = async (type: number, extra: [number, Buffer][] = []) => {
        const pkt = request(type, mac, { giaddr: '127.0.0.1' }, extra);
        // The subnet is loaded in the background after its creation: ask until the server answers.
        for (let i = 0; i < 20; i++) {
          await relay.send(pkt, p.port);
          const reply = await relay.wait(pkt.xid, 250);
          if (reply) return reply;
        }
        throw new Error(`no answer to DHCP message type ${type}`);
      };
      const offer = await ask(MessageType.DISCOVER);
      expect(offer.yiaddr).toBe('127.0.0.20');
      const ack = await ask(MessageType.REQUEST, [
        [Opt.RequestedIp, ip4('127.0.0.20')],
        [Opt.ServerId, offer.options.get(Opt.ServerId)!],
      ]);
      expect(ack.options.get(Opt.MessageType)?.[0]).toBe(MessageType.ACK);
    } finally {
      await relay.close();
    }
    // From another loopback address than the lease's: still not that machine.
    expect((await getFrom('127.0.0.21', `/boot/ipxe/${mac}?arch=x86_64`)).text).toContain('discovery/vmlinuz');
    expect((await api('GET', `/api/v1/machines?macs=${mac}`)).body).toEqual([]);
    const { text } = await getFrom('127.0.0.20', `/boot/ipxe/${mac}?arch=x86_64`);
    const m = (await api('GET', `/api/v1/machines?macs=${mac}`)).body[0];
    expect(m).toMatchObject({ name: 'd-525400e60002', bootEnv: 'discovery', address: '127.0.0.20', arch: 'amd64' });
    const token = /plinth\.token=(\S+)/.exec(text)?.[1];
    expect(token?.length).toBeGreaterThan(20);
    const inv = await fetch(url(`/api/v1/machines/${m.uuid}/inventory`), {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ cpus: 2 }),
    });
    expect(inv.status).toBe(200);
  });
});
