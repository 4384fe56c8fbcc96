/**
 * Subnet owners in one daemon on SQLite (its --server-id rack-a, DHCP on loopback, relayed requests): a subnet
 * owned by another daemon is not served (counted in /metrics), one naming rack-a is; as a standby it answers while
 * the primary has no heartbeat, and while the primary beats only a client whose secs reached standbySecs. The API
 * answers 400 naming the field for a wrong `owners` or `standbySecs`.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import type { DaemonDoc } from '../../src/daemon-registry.js';
import { MessageType } from '../../src/dhcp/options.js';
import { silentLogger } from '../../src/log.js';
import { testConfig } from '../helpers/daemon.js';
import { listener, ports, request } from './helpers.js';

let daemon: Daemon;
let dataDir: string;
let relay: Awaited<ReturnType<typeof listener>>;
let token: string;
const p = ports();

async function api(method: string, u: string, body?: unknown) {
  const r = await fetch(`http://127.0.0.1:${daemon.httpPort}${u}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, text, body: text.startsWith('{') ? JSON.parse(text) : undefined };
}

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-owners-'));
  daemon = await startDaemon(
    testConfig(dataDir, { dhcp: true, dhcpPort: p.port, dhcpProxyPort: p.proxyPort, serverId: 'rack-a' }),
    silentLogger,
    {},
    {
      dhcp: {
        wildcard: true,
        clientPort: p.clientPort,
        relayPort: p.relayPort,
        ownersRefreshMs: 100,
        replyTo: (d) => ({ address: '127.0.0.1', port: d.port }),
      },
    },
  );
  relay = await listener(p.relayPort);
  token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
});
afterAll(async () => {
  await relay?.close();
  await daemon?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const LAB = { name: 'lab', subnet: '10.99.1.0/24', activeStart: '10.99.1.100', activeEnd: '10.99.1.199' };
/** One relayed DISCOVER for the subnet of `giaddr`; its OFFER or undefined. */
async function discover(giaddr: string, secs = 0, ms = 300) {
  const d = request(MessageType.DISCOVER, '52:54:04:00:00:01', { giaddr, hops: 1, secs });
  await relay.send(d, p.port);
  return relay.wait(d.xid, ms);
}
/**
 * Asks until `want` (an OFFER or silence) comes, for 10 s at most: a subnet change and the daemons list reach the
 * server in the background.
 */
async function until(want: 'offer' | 'silence', giaddr: string, secs = 0) {
  for (const end = Date.now() + 10_000; Date.now() < end; await new Promise((r) => setTimeout(r, 50)))
    if (((await discover(giaddr, secs)) !== undefined) === (want === 'offer')) return;
  throw new Error(`no ${want} for ${giaddr}`);
}

describe('subnet owners on one SQLite daemon (--server-id rack-a)', () => {
  it('rejects a wrong owners or standbySecs with 400 naming the field', async () => {
    const bad = await api('POST', '/api/v1/subnets', { ...LAB, owners: ['rack-a', 'no spaces'] });
    expect(bad.status).toBe(400);
    expect(bad.body.errors.map((e: { path: string }) => e.path)).toEqual(['owners.1']);
    const secs = await api('POST', '/api/v1/subnets', { ...LAB, standbySecs: 0 });
    expect(secs.status).toBe(400);
    expect(secs.body.errors.map((e: { path: string }) => e.path)).toEqual(['standbySecs']);
  });

  it('does not serve a subnet owned by other daemons, serves one naming it, takes over as a standby', async () => {
    expect((await api('POST', '/api/v1/subnets', { ...LAB, owners: ['rack-b'] })).status).toBe(201);
    const open = { name: 'open', subnet: '10.99.2.0/24', activeStart: '10.99.2.100', activeEnd: '10.99.2.199' };
    expect((await api('POST', '/api/v1/subnets', open)).status).toBe(201);
    // Both subnets are loaded once `open` (created last) is answered; `lab` is not, even past standbySecs.
    await until('offer', '10.99.2.5');
    expect(await discover('10.99.1.5', 0, 800)).toBeUndefined();
    expect(await discover('10.99.1.5', 60, 800)).toBeUndefined();
    expect((await api('GET', '/metrics')).text).toMatch(/^plinth_dhcp_not_owner_total\{reason="not_owner"\} [1-9]/m);

    // Named as the only owner: served.
    expect((await api('PATCH', '/api/v1/subnets/lab', { owners: ['rack-a'] })).status).toBe(200);
    await until('offer', '10.99.1.5');

    // A standby behind rack-b, which has never beaten: rack-a answers.
    expect((await api('PATCH', '/api/v1/subnets/lab', { owners: ['rack-b', 'rack-a'], standbySecs: 5 })).status).toBe(
      200,
    );
    await until('offer', '10.99.1.5');

    // rack-b beats (a heartbeat document as its registry writes it): rack-a leaves it the clients, except those
    // trying for standbySecs.
    const now = new Date().toISOString();
    await daemon.store.putBatched('daemons', 'rack-b', {
      serverId: 'rack-b',
      host: 'elsewhere',
      pid: 1,
      version: 'test',
      backend: 'sqlite',
      startedAt: now,
      beatAt: now,
      beatSeconds: 60,
    } satisfies DaemonDoc);
    await until('silence', '10.99.1.5');
    expect(await discover('10.99.1.5', 4, 800)).toBeUndefined();
    expect(await discover('10.99.1.5', 5)).toBeDefined();
    expect((await api('GET', '/metrics')).text).toMatch(/^plinth_dhcp_not_owner_total\{reason="standby"\} [1-9]/m);
    // Stopped cleanly: not alive, rack-a answers everyone again.
    await daemon.store.putBatched('daemons', 'rack-b', {
      serverId: 'rack-b',
      host: 'elsewhere',
      pid: 1,
      version: 'test',
      backend: 'sqlite',
      startedAt: now,
      beatAt: now,
      beatSeconds: 60,
      stoppedAt: new Date().toISOString(),
    } satisfies DaemonDoc);
    await until('offer', '10.99.1.5');
  });
});
