/**
 * Simulated machines behind a fake BMC, for the fleet tests. The BMC is a small HTTP server in the test process
 * (so a daemon child killed with -9 cannot take its call counts with it); its driver (httpBmcDrivers) runs in the
 * daemon. A power-on or cycle with a PXE-once override makes the machine do a relayed DHCP DORA against the
 * daemon on loopback and, unless its bootenv is a broken one, call back `booted` and turn healthy.
 * startFleetDaemon: such a fleet and a real daemon in this process, wired together (the fleet and /ui tests).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Config } from '../../src/config.js';
import { type Daemon, type DaemonOptions, startDaemon } from '../../src/daemon.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { type Logger, silentLogger } from '../../src/log.js';
import { type BootOverride, type DriverFactory, PowerError } from '../../src/power/driver.js';
import { ip4, listener, ports, request } from '../dhcp/helpers.js';
import { testConfig } from '../helpers/daemon.js';

export const BMC_PASSWORD = 'hunter2-bmc-secret';

/** The daemon side: each BMC is `<base>/<bmc.address>/<op>`, with the machine's credentials as basic auth. */
export function httpBmcDrivers(base: string): DriverFactory {
  return (bmc) => {
    const auth = `Basic ${Buffer.from(`${bmc.username}:${bmc.password}`).toString('base64')}`;
    const call = async (op: string, body: unknown, signal: AbortSignal) => {
      const r = await fetch(`${base}/${bmc.address}/${op}`, {
        method: 'POST',
        headers: { authorization: auth, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal,
      }).catch((err) => {
        throw new PowerError('unreachable', (err as Error).message);
      });
      if (r.status === 401) throw new PowerError('auth', 'the BMC refused the credentials');
      if (!r.ok) throw new PowerError('failed', `BMC answered ${r.status}`);
      return (await r.json()) as { state: 'on' | 'off' };
    };
    return {
      status: async (s) => (await call('status', {}, s)).state,
      power: async (a, s) => void (await call(a, {}, s)),
      setBootDevice: async (o: BootOverride, s) => void (await call('bootdev', o, s)),
    };
  };
}

export type SimMachine = {
  name: string;
  mac: string;
  uuid?: string;
  power: 'on' | 'off';
  pxeOnce: boolean;
  healthy: boolean;
  /** A BMC that answers 200 to a boot override and does not keep it. */
  ignoresOverride?: boolean;
  /** From power-on to its firmware's first DHCP request, when not the fleet's (SimOptions.bootDelayMs). */
  bootDelayMs?: number;
  /** Every BMC call, in order, with its time. */
  ops: { op: string; at: number }[];
  boots: number;
};

export type SimOptions = {
  dhcpPort: number;
  relayPort: number;
  api: () => { url: string; token: string };
  /** Bootenvs whose OS never calls back. */
  broken?: Set<string>;
  /** From power-on to the firmware's first DHCP request (default 20 ms). */
  bootDelayMs?: number;
};

export async function simFleet(o: SimOptions) {
  const machines = new Map<string, SimMachine>();
  const relay = await listener(o.relayPort);
  const pending = new Set<Promise<void>>();
  const stopped = { v: false };

  const dora = async (m: SimMachine): Promise<boolean> => {
    const end = Date.now() + 30_000;
    const pxe: [number, Buffer][] = [
      [93, Buffer.from([0, 0])],
      [60, Buffer.from('PXEClient:Arch:00000:UNDI:002001')],
      [77, Buffer.from('iPXE')],
    ];
    while (Date.now() < end && !stopped.v) {
      const d = request(MessageType.DISCOVER, m.mac, { giaddr: '10.99.1.1', hops: 1 }, pxe);
      await relay.send(d, o.dhcpPort);
      const offer = await relay.wait(d.xid, 500);
      if (!offer) continue;
      const r = request(MessageType.REQUEST, m.mac, { xid: d.xid, giaddr: '10.99.1.1', hops: 1 }, [
        ...pxe,
        [Opt.ServerId, offer.options.get(Opt.ServerId)!],
        [Opt.RequestedIp, ip4(offer.yiaddr)],
      ]);
      await relay.send(r, o.dhcpPort);
      if (await relay.wait(d.xid, 1000)) return true;
    }
    return false;
  };

  const apiCall = async (path: string) => {
    const { url, token } = o.api();
    const r = await fetch(url + path, { headers: { authorization: `Bearer ${token}` } });
    return { status: r.status, body: (await r.json().catch(() => undefined)) as any };
  };

  /** Firmware start: PXE when the override says so (consumed), else the disk, which does not talk to Plinth. */
  const boot = async (m: SimMachine) => {
    m.healthy = false;
    if (!m.pxeOnce) return;
    m.pxeOnce = false;
    m.boots++;
    if (!(await dora(m))) return;
    const end = Date.now() + 30_000;
    while (Date.now() < end && !stopped.v) {
      const got = await apiCall(`/api/v1/machines/${m.name}`).catch(() => undefined);
      if (got?.status === 200) {
        if (o.broken?.has(got.body.bootEnv)) return;
        const cb = await apiCall(`/api/v1/machines/${got.body.uuid}/callback?event=booted`).catch(() => undefined);
        if (cb?.status === 200) {
          m.healthy = true;
          return;
        }
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  };
  const later = (m: SimMachine) => {
    const p = new Promise((r) => setTimeout(r, m.bootDelayMs ?? o.bootDelayMs ?? 20)).then(() => boot(m));
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };

  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      const [, name, op] = (req.url ?? '').split('/');
      const m = machines.get(name ?? '');
      const cred = Buffer.from(`admin:${BMC_PASSWORD}`).toString('base64');
      if (!m || !op) return res.writeHead(404).end('{}');
      if (req.headers.authorization !== `Basic ${cred}`) return res.writeHead(401).end('{}');
      m.ops.push({ op: op === 'bootdev' ? `bootdev:${JSON.parse(body).device}` : op, at: Date.now() });
      if (op === 'bootdev') m.pxeOnce = !m.ignoresOverride && JSON.parse(body).device === 'pxe';
      if (op === 'off') m.power = 'off';
      if (op === 'on' || op === 'cycle' || op === 'reset') {
        const wasOff = m.power === 'off';
        m.power = 'on';
        if (op !== 'on' || wasOff) later(m);
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ state: m.power }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const bmcUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  // The health URL a rollout polls: 200 once the machine's OS is up.
  const health = http.createServer((req, res) => {
    const name = (req.url ?? '').split('/')[2] ?? '';
    res.writeHead(machines.get(name)?.healthy ? 200 : 503).end();
  });
  await new Promise<void>((r) => health.listen(0, '127.0.0.1', r));
  const healthUrl = `http://127.0.0.1:${(health.address() as AddressInfo).port}/health/{name}`;

  return {
    machines,
    bmcUrl,
    healthUrl,
    add(name: string, mac: string, power: 'on' | 'off' = 'on'): SimMachine {
      const m: SimMachine = { name, mac, power, pxeOnce: false, healthy: true, ops: [], boots: 0 };
      machines.set(name, m);
      return m;
    },
    bmcOf: (name: string) => ({ driver: 'redfish', address: name, username: 'admin', password: BMC_PASSWORD }),
    count: (name: string, op: string) => machines.get(name)!.ops.filter((x) => x.op === op).length,
    async close() {
      stopped.v = true;
      await Promise.allSettled([...pending]);
      await relay.close();
      await new Promise((r) => server.close(r));
      await new Promise((r) => health.close(r));
    },
  };
}
export type SimFleet = Awaited<ReturnType<typeof simFleet>>;

export type FleetPorts = ReturnType<typeof ports>;

/** The daemon side of a simulated fleet: DHCP on loopback `p` (relayed, replies to 127.0.0.1), the fake BMC's driver. */
export function fleetDaemonConfig(dataDir: string, p: FleetPorts, over: Partial<Config> = {}): Config {
  return testConfig(dataDir, { dhcp: true, dhcpPort: p.port, dhcpProxyPort: p.proxyPort, ...over });
}
export function fleetDaemonOptions(p: FleetPorts, bmcUrl: string): DaemonOptions {
  return {
    dhcp: {
      wildcard: true,
      clientPort: p.clientPort,
      relayPort: p.relayPort,
      replyTo: (d) => ({ address: '127.0.0.1', port: d.port }),
    },
    drivers: httpBmcDrivers(bmcUrl),
  };
}

/** The subnet the simulated machines' relay (giaddr 10.99.1.1) is in. */
export const FLEET_SUBNET = {
  name: 'lab',
  subnet: '10.99.1.0/24',
  activeStart: '10.99.1.100',
  activeEnd: '10.99.1.199',
  options: [{ code: 3, value: '10.99.1.1' }],
};

export type FleetApi = (
  method: string,
  u: string,
  body?: unknown,
  contentType?: string,
) => Promise<{ status: number; body: any; text: string }>;

/**
 * A daemon in this process with a simulated fleet behind the fake BMC: the lab subnet, and bootenvs `good` and
 * `broken` (copies of `local`; a machine on `broken` never calls back). Machines are the caller's (sim.add and the
 * API). close() stops both and removes the data dir.
 */
export async function startFleetDaemon(o: { log?: Logger; config?: Partial<Config> } = {}) {
  const p = ports();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-fleet-'));
  let daemon: Daemon | undefined;
  let token = '';
  const base = () => `http://127.0.0.1:${daemon!.httpPort}`;
  const sim = await simFleet({
    dhcpPort: p.port,
    relayPort: p.relayPort,
    api: () => ({ url: base(), token }),
    broken: new Set(['broken']),
  });
  const api: FleetApi = async (method, u, body, contentType = 'application/json') => {
    const r = await fetch(base() + u, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': contentType } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : undefined, text };
  };
  const close = async () => {
    await daemon?.close();
    await sim.close();
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    daemon = await startDaemon(
      fleetDaemonConfig(dataDir, p, o.config),
      o.log ?? silentLogger,
      {},
      fleetDaemonOptions(p, sim.bmcUrl),
    );
    token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
    const must = async (what: string, r: Promise<{ status: number; text: string }>, want: number) => {
      const got = await r;
      if (got.status !== want) throw new Error(`${what}: ${got.status} ${got.text}`);
    };
    await must('the lab subnet', api('POST', '/api/v1/subnets', FLEET_SUBNET), 201);
    const { createdAt: _c, updatedAt: _u, ...local } = (await api('GET', '/api/v1/bootenvs/local')).body;
    for (const name of ['good', 'broken'])
      await must(`bootenv ${name}`, api('POST', '/api/v1/bootenvs', { ...local, name }), 201);
  } catch (err) {
    await close();
    throw err;
  }
  return { daemon: daemon!, sim, dataDir, token, base, api, close };
}
export type FleetDaemon = Awaited<ReturnType<typeof startFleetDaemon>>;
