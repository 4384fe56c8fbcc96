/**
 * A machine's address and lastSeen come from this daemon's DHCP only: a lease ACK, or in proxyDHCP mode the
 * answered boot-server REQUEST (`proxy.acked`, emitted by the proxy server); never from an HTTP GET.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { ports } from '../dhcp/helpers.js';
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

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-address-'));
  daemon = await startDaemon(
    testConfig(dataDir, { dhcp: true, dhcpPort: p.port, dhcpProxyPort: p.proxyPort }),
    silentLogger,
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
    const events = (await api('GET', `/api/v1/machines/${m.body.uuid}/boots`)).body[0].events;
    expect(events.map((e: { detail: string }) => e.detail)).toContain(
      'proxyDHCP boot-server request from 10.79.5.23 answered (subnet seg)',
    );
  });
});
