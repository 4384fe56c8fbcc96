/**
 * Three Plinth daemons on one PostgreSQL inventory (issue 17), each in a network namespace of its own serving its
 * rack through a relay, with real clients: perfdhcp as a relay (load; the same MAC range in every rack) and
 * dhclient behind ISC dhcrelay. Topology in cluster-net.ts. What it proves, each `it` on its own:
 *
 * 1. Under load on three racks, daemon c killed with SIGKILL at a random moment: every lease a client was ACKed
 *    (perfdhcp's and dhclient's own logs) is in the leases table, bound to that client; racks a and b keep being
 *    served; c, restarted, serves rack c again and gives its earlier clients the addresses they had.
 * 2. PostgreSQL restarted (`pg_ctl restart -m fast`) under load: every ACK clients got is a committed lease (no
 *    ACK without a durable lease), the daemons reconnect and serve again, and an SSE subscriber on daemon c gets
 *    every machine created through daemon a before and after the outage, live and replayed by Last-Event-ID.
 * 3. An HA pair: a subnet owned by [a, b] behind a relay forwarding to both: a (the primary) answers, b stays
 *    silent; a killed -9, b answers the clients' renewals and rebinds with the same addresses.
 * 4. A QEMU VM boots from daemon b with a bootenv created through daemon a and files uploaded to daemon c
 *    (PLINTH_E2E_CLUSTER_QEMU=0 skips it).
 * 5. At the end, in SQL: no address ACKed to two clients, no client with two live leases in a subnet, every ACK
 *    any client got still in the table.
 *
 * Runs as root (namespaces, dhcrelay, QEMU); starts a PostgreSQL cluster of its own (it restarts it) on port
 * 55466 (PLINTH_E2E_CLUSTER_PG_PORT).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256File } from '../../src/files/store-files.js';
import { startVm, type Vm } from '../../src/lab/qemu.js';
import { ensureAddon } from '../dhcp/addon.js';
import {
  type Ack,
  type Dhclient,
  dhclient,
  dhclientAcks,
  dhcrelay,
  perfdhcp,
  subscribe,
  writeDhclientScript,
} from './cluster-clients.js';
import {
  api,
  buildTopology,
  clientMac,
  daemon,
  daemonAddr,
  daemonLog,
  deleteTopology,
  idx,
  killDaemon,
  NS,
  PG_DIR,
  pgRestart,
  pgStart,
  pgStop,
  RACKS,
  type Rack,
  ROOT,
  rackSubnet,
  serverId,
  sql,
  startDaemon,
  stopDaemons,
  VM_MAC,
} from './cluster-net.js';
import type { Proc } from './dhcp-netns.js';
import { BOOTED, buildImages, FAILED, IMAGES, LAB_PARAMS } from './setup.js';

const WORK = path.join(ROOT, '.lab/e2e-cluster');
const acks: Ack[] = []; // every ACK any client reported, checked against the table at the end
const relays: Proc[] = [];
const clients: Dhclient[] = [];
let vm: Vm | undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every ACK in `list` is a bound lease of that MAC in the table (one query). */
async function expectCommitted(list: Ack[]) {
  const rows = await sql<{ key: string; mac: string; state: string }>(
    "SELECT key, doc ->> 'mac' AS mac, doc ->> 'state' AS state FROM leases WHERE key = ANY($1)",
    [[...new Set(list.map((a) => a.address))]],
  );
  const byAddress = new Map(rows.map((r) => [r.key, { mac: r.mac, state: r.state }]));
  const missing = list.filter(
    (a) => byAddress.get(a.address)?.mac !== a.mac || byAddress.get(a.address)?.state !== 'bound',
  );
  expect(missing.map((a) => `${a.from}: ${a.mac} ${a.address} -> ${JSON.stringify(byAddress.get(a.address))}`)).toEqual(
    [],
  );
}
async function startClient(ns: string, ifname: string, mac: string, subnet: string) {
  const c = await dhclient(ns, ifname, mac, subnet, WORK);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  if (!ensureAddon()) throw new Error('the native socket helper could not be built: npm run build:native');
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  writeDhclientScript(WORK);
  buildTopology();
  pgStart();
  await Promise.all(RACKS.map((r) => startDaemon(r, WORK)));
  for (const r of RACKS) {
    const i = idx(r);
    const s = {
      name: `rack-${r}`,
      subnet: rackSubnet(r),
      activeStart: `10.13${i}.2.1`,
      activeEnd: `10.13${i}.5.254`,
      leaseTime: 600,
      options: [{ code: 3, value: `10.13${i}.0.1` }],
    };
    const res = api(r).json('POST', '/api/v1/subnets', s);
    expect(res.status, res.text).toBe(201);
  }
  // Each daemon's DHCP cache learns of the others' subnets from the event log; all three are listed everywhere.
  for (const r of RACKS) expect(api(r).json('GET', '/api/v1/subnets').body.length).toBe(3);
  expect(
    api('a')
      .json('GET', '/api/v1/daemons')
      .body.map((d: { serverId: string }) => d.serverId)
      .sort(),
  ).toEqual(['cl-a', 'cl-b', 'cl-c']);
  for (const r of RACKS) relays.push(await dhcrelay(NS.r(r), ['up0'], [`10.121.${idx(r)}.1`]));
}, 300_000);

afterAll(async () => {
  await vm?.stop();
  for (const c of clients) await c.proc.stop();
  for (const p of relays) await p.stop();
  await stopDaemons();
  for (const r of RACKS) writeFileSync(path.join(WORK, `daemon-${r}.log`), daemonLog(r));
  deleteTopology();
  pgStop();
  rmSync(PG_DIR, { recursive: true, force: true });
});

describe('three daemons on one PostgreSQL', () => {
  it('1. three racks under load, one daemon killed -9 at a random moment: nothing ACKed is lost, the others serve on', async () => {
    for (const r of RACKS) {
      const c = await startClient(NS.c(r), 'eth0', clientMac(0), `rack-${r}`);
      expect(dhclientAcks(c)[0]?.from).toBe(daemonAddr(r));
    }
    const killAt = 3000 + Math.floor(Math.random() * 5000);
    const killer = sleep(killAt).then(() => killDaemon('c'));
    const runs = await Promise.all(RACKS.map((r) => perfdhcp(r, { rate: 25, seconds: 10, clients: 200 })));
    await killer;
    console.log(`daemon c killed at +${killAt} ms; ACKs per rack: ${runs.map((x) => x.acks.length).join(', ')}`);
    for (const [k, run] of runs.entries()) {
      expect(run.acks.length, run.out).toBeGreaterThan(0);
      acks.push(...run.acks);
      // Overlapping MACs across racks: each rack's clients got addresses of their own rack's subnet.
      for (const a of run.acks) expect(a.address.startsWith(`10.13${k + 1}.`)).toBe(true);
    }
    for (const c of clients) acks.push(...dhclientAcks(c));
    // The counter test 3 holds the standby to (its offers) counts this load.
    expect(dhcpCount('a', 'offer')).toBeGreaterThan(0);
    // Every ACK c sent before it died is a committed lease; the same for a and b.
    await expectCommitted(acks);

    // a and b keep serving their racks, to new clients and to perfdhcp's; c's rack hears nothing.
    for (const r of ['a', 'b'] as const) {
      const c = await startClient(NS.c(r), 'eth1', clientMac(1), `rack-${r}`);
      acks.push(...dhclientAcks(c));
      const run = await perfdhcp(r, { rate: 20, count: 60, clients: 200 });
      expect(run.acks.length, run.out).toBeGreaterThan(30);
      acks.push(...run.acks);
    }
    expect((await perfdhcp('c', { rate: 20, count: 20, clients: 200 })).acks).toEqual([]);

    // c restarted on the same inventory: serves rack c again; a client it ACKed before its death keeps its address.
    const before = new Map(runs[2]!.acks.map((a) => [a.mac, a.address]));
    await startDaemon('c', WORK);
    const again = await perfdhcp('c', { rate: 20, count: 60, clients: 200 });
    expect(again.acks.length, again.out).toBeGreaterThan(30);
    acks.push(...again.acks);
    const both = again.acks.filter((a) => before.has(a.mac));
    expect(both.length).toBeGreaterThan(0);
    for (const a of both) expect(a.address, a.mac).toBe(before.get(a.mac));
    const c = await startClient(NS.c('c'), 'eth1', clientMac(1), 'rack-c');
    acks.push(...dhclientAcks(c));
    await expectCommitted(acks);
  });

  it("2. PostgreSQL restarted under load: no ACK without a committed lease, daemons reconnect, SSE on c sees a's changes", async () => {
    const base = `http://${daemonAddr('c')}:8091`;
    const live = subscribe(NS.d('c'), base, 'type=machines.');
    await sleep(1000);
    // An operator creating machines through daemon a all along (one every 300 ms; 503 while the store is away).
    const created: { uuid: string; at: number }[] = [];
    const statuses: number[] = [];
    let writing = true;
    let n = 0;
    const writer = (async () => {
      while (writing) {
        const r = api('a').json('POST', '/api/v1/machines', {
          name: `pgr-${n}`,
          macs: [`52:54:00:aa:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`],
        });
        statuses.push(r.status);
        if (r.status === 201) {
          created.push({ uuid: r.body.uuid, at: Date.now() });
          n++;
        }
        await sleep(300);
      }
    })();
    const restartAt = 3000 + Math.floor(Math.random() * 3000);
    let lastBefore = 0;
    let restartedAt = 0;
    const restart = sleep(restartAt).then(async () => {
      lastBefore = Math.max(0, ...live.events().map((e) => e.id));
      await pgRestart();
      restartedAt = Date.now();
    });
    const runs = await Promise.all(RACKS.map((r) => perfdhcp(r, { rate: 20, seconds: 14, clients: 300 })));
    await restart;
    // Writes keep going a few seconds after the restart (the pool reconnects on its own).
    await sleep(4000);
    writing = false;
    await writer;
    console.log(
      `PostgreSQL restarted at +${restartAt} ms; ACKs per rack: ${runs.map((x) => x.acks.length).join(', ')}; API statuses ${JSON.stringify(countBy(statuses))}`,
    );
    for (const x of runs) acks.push(...x.acks);
    // No ACK for a lease that was not committed: every ACK perfdhcp got, through the outage, is a bound lease.
    await expectCommitted(runs.flatMap((x) => x.acks));
    // Every daemon is still running and serves its rack again.
    for (const r of RACKS) {
      const { exitCode, signalCode } = daemon(r).proc.child;
      expect({ exitCode, signalCode }, daemonLog(r).slice(-3000)).toEqual({ exitCode: null, signalCode: null });
      // 200 DORAs a rack: with the run's, well over 1,024 lease events on c before the replay below.
      const after = await perfdhcp(r, { rate: 100, count: 200, clients: 300 });
      expect(after.acks.length, after.out).toBeGreaterThan(100);
      acks.push(...after.acks);
      await expectCommitted(after.acks);
    }
    expect(created.some((c) => c.at > restartedAt)).toBe(true);
    // c's subscriber saw every machine a created, before and after the outage...
    const keys = (sub: ReturnType<typeof subscribe>) => new Set(sub.events().map((e) => e.data.key));
    await until(() => created.every((c) => keys(live).has(c.uuid)), 15_000);
    const seen = keys(live);
    for (const c of created) expect(seen.has(c.uuid), c.uuid).toBe(true);
    // ...and one reconnecting with the id before the first of them gets them all replayed. The replay keeps the last
    // 1,024 DHCP events apart from the rest: the three racks' lease events since then (c publishes its peers' too,
    // ~2 per DORA: more than 1,024 of them) cannot push the few dozen machine events out, and the stream is told of
    // no loss.
    const first = Math.min(...live.events().map((e) => e.id));
    const replay = subscribe(NS.d('c'), base, 'type=machines.', first - 1);
    await until(() => created.every((c) => keys(replay).has(c.uuid)), 15_000);
    await replay.proc.stop();
    await live.proc.stop();
    const newest = Number(/newest id (\d+)/.exec(replay.proc.output())?.[1]);
    const afterOutage = created.filter((c) => c.at > restartedAt);
    const replayed = keys(replay);
    console.log(
      `replay from id ${first - 1} (newest ${newest}, outage after ${lastBefore}): ${created.filter((c) => replayed.has(c.uuid)).length} of ${created.length} machines (${afterOutage.length} after the outage); lost notices ${JSON.stringify(replay.lost())}`,
    );
    for (const c of created) expect(replayed.has(c.uuid), c.uuid).toBe(true);
    expect(replay.lost()).toEqual([]);
    // What makes this a test of the split: more events followed than one buffer of every type would have kept.
    expect(newest - first).toBeGreaterThan(1024);
  });

  it('3. HA pair: a subnet owned by [a, b]: a answers, b is silent; a killed -9, b renews the same addresses', async () => {
    const shared = {
      name: 'shared',
      subnet: '10.140.0.0/24',
      activeStart: '10.140.0.100',
      activeEnd: '10.140.0.199',
      leaseTime: 60,
      options: [{ code: 3, value: '10.140.0.1' }],
      owners: [serverId('a'), serverId('b')],
    };
    // b must know the subnet before its clients come (else its silence would prove nothing): it hears of it on its
    // bus, from a's event, which is what reloads its DHCP cache too.
    const onB = subscribe(NS.d('b'), `http://${daemonAddr('b')}:8091`, 'type=subnets.');
    await sleep(500);
    const res = api('a').json('POST', '/api/v1/subnets', shared);
    expect(res.status, res.text).toBe(201);
    await until(() => onB.events().some((e) => e.data.key === 'shared'), 15_000);
    await onB.proc.stop();
    expect(onB.events().map((e) => e.data.key)).toContain('shared');
    relays.push(await dhcrelay(NS.rs, ['upa', 'upb'], ['10.122.1.1', '10.122.2.1']));
    await sleep(1000);
    const offersOfB = dhcpCount('b', 'offer');
    const receivedByB = receivedCount('b');
    const pair: Dhclient[] = [];
    for (const k of [0, 1, 2]) pair.push(await startClient(NS.cs, `eth${k}`, `52:54:00:5a:00:0${k}`, 'shared'));
    const first = new Map<Dhclient, string>();
    for (const c of pair) {
      const ack = dhclientAcks(c).at(-1)!;
      expect(ack.from).toBe(daemonAddr('a'));
      first.set(c, ack.address);
      acks.push(...dhclientAcks(c));
    }
    // The primary answered; the standby did not even offer (dhclient names the relay, not the server: b's own count).
    expect(receivedCount('b')).toBeGreaterThan(receivedByB);
    expect(dhcpCount('b', 'offer')).toBe(offersOfB);
    await killDaemon('a');
    try {
      await failover(pair, first);
    } finally {
      await startDaemon('a', WORK);
    }
  });

  it.skipIf(process.env.PLINTH_E2E_CLUSTER_QEMU === '0')(
    '4. a QEMU VM boots from daemon b: bootenv created through a, files uploaded to c',
    async () => {
      buildImages();
      if (daemon('a').proc.child.exitCode !== null || daemon('a').proc.child.signalCode) await startDaemon('a', WORK);
      for (const f of ['vmlinuz', 'lab-a.img'])
        expect(api('c').upload(path.join(IMAGES, f), `cl/${f}`).status).toBeLessThan(300);
      const be = api('a').json('POST', '/api/v1/bootenvs', {
        name: 'cl-lab',
        kernel: 'cl/vmlinuz',
        initrds: ['cl/lab-a.img'],
        bootParams: LAB_PARAMS,
        artifacts: [
          { path: 'cl/vmlinuz', sha256: await sha256File(path.join(IMAGES, 'vmlinuz')) },
          { path: 'cl/lab-a.img', sha256: await sha256File(path.join(IMAGES, 'lab-a.img')) },
        ],
      });
      expect(be.status, be.text).toBe(201);
      const m = api('a').json('POST', '/api/v1/machines', { name: 'cl-vm', macs: [VM_MAC], bootEnv: 'cl-lab' });
      expect(m.status, m.text).toBe(201);
      vm = startVm({
        ns: NS.r('b'),
        tap: 'tap0',
        mac: VM_MAC,
        firmware: 'bios',
        noReboot: true,
        serialLog: path.join(WORK, 'serial-vm.log'),
        workDir: WORK,
      });
      try {
        // A refusal (a file b has not got) ends the wait at once: iPXE would only retry it.
        const line = await vm.waitFor(BOOTED, 240_000, new RegExp(`${FAILED.source}|refusing to boot.*`));
        expect(line).toMatch(new RegExp(`image=lab-a mac=${VM_MAC} ip=10\\.132\\.`));
      } finally {
        await vm.stop();
      }
      const boots = api('b').json('GET', `/api/v1/machines/${m.body.uuid}/boots`).body;
      expect(boots[0]).toMatchObject({ bootEnv: 'cl-lab', result: 'booted' });
    },
  );

  it('5. at the end, in SQL: no address held by two clients, every ACK any client got is in the table', async () => {
    expect(acks.length).toBeGreaterThan(100);
    const owner = new Map<string, string>();
    for (const a of acks) {
      const o = owner.get(a.address);
      expect(o === undefined || o === a.mac, `${a.address} ACKed to ${o} and ${a.mac}`).toBe(true);
      owner.set(a.address, a.mac);
    }
    await expectCommitted(acks);
    const twice =
      await sql(`SELECT doc ->> 'subnet' AS subnet, coalesce(doc ->> 'clientId', doc ->> 'mac') AS client, count(*) AS n
      FROM leases WHERE doc ->> 'state' IN ('offered', 'bound') GROUP BY 1, 2 HAVING count(*) > 1`);
    expect(twice).toEqual([]);
    const outside = await sql(`SELECT key, doc ->> 'subnet' AS subnet FROM leases WHERE NOT (
      (doc ->> 'subnet' = 'rack-a' AND key LIKE '10.131.%') OR (doc ->> 'subnet' = 'rack-b' AND key LIKE '10.132.%') OR
      (doc ->> 'subnet' = 'rack-c' AND key LIKE '10.133.%') OR (doc ->> 'subnet' = 'shared' AND key LIKE '10.140.0.%'))`);
    expect(outside).toEqual([]);
  });
});

/** After the primary's death: every client of the pair is ACKed by b, each keeping its address. */
async function failover(pair: Dhclient[], first: Map<Dhclient, string>) {
  // From T1 (30 s) the renewals go to a's address (dhcrelay on the segment also relays them to both daemons), at T2
  // (52.5 s) the rebinding broadcasts reach both through the relay: b answers once a's heartbeat is stale or the
  // client's secs reaches the subnet's standbySecs (10 s by default).
  const until = Date.now() + 120_000;
  for (const c of pair) {
    while (!dhclientAcks(c).some((x) => x.from === daemonAddr('b')) && Date.now() < until) await sleep(1000);
    const fromB = dhclientAcks(c).filter((x) => x.from === daemonAddr('b'));
    expect(fromB.length, c.proc.out()).toBeGreaterThan(0);
    for (const x of fromB) expect(x.address).toBe(first.get(c));
    acks.push(...fromB);
  }
  await expectCommitted(pair.map((c) => dhclientAcks(c).at(-1)!));
}

/** A daemon's count of DHCP packets with this outcome (its /metrics). */
function dhcpCount(r: Rack, outcome: string): number {
  const text = api(r).get('/metrics').text;
  const m = new RegExp(`^plinth_dhcp_packets_total\\{[^}]*outcome="${outcome}"[^}]*\\} (\\d+)`, 'm').exec(text);
  if (!m) throw new Error(`no ${outcome} count in /metrics of ${r}: ${text.slice(0, 500)}`);
  return Number(m[1]);
}
/** Packets the daemon's DHCP server received (its /metrics): the relay forwards the pair's clients to both. */
function receivedCount(r: Rack): number {
  const m = /^plinth_dhcp_received_packets_total (\d+)/m.exec(api(r).get('/metrics').text);
  if (!m) throw new Error(`no received count in /metrics of ${r}`);
  return Number(m[1]);
}
async function until(ok: () => boolean, ms: number) {
  for (const end = Date.now() + ms; !ok() && Date.now() < end; ) await sleep(250);
}
function countBy(xs: number[]) {
  const m: Record<string, number> = {};
  for (const x of xs) m[x] = (m[x] ?? 0) + 1;
  return m;
}
