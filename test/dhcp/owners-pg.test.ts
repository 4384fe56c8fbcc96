/**
 * Subnet owners and an HA pair on one PostgreSQL inventory (issue 17): three daemons in child processes, each with
 * its heartbeat (one beat a second, stale after 3 s), every relayed request sent to all three. Subnet `lab` is
 * owned by rack-a (primary) then rack-b (standby); rack-c is not an owner. Only the primary answers while it is
 * alive; the standby answers a client whose secs reached standbySecs; after the primary's SIGKILL and its
 * heartbeat going stale the standby answers, and the primary's client keeps its address (DISCOVER, REBINDING and
 * INIT-REBOOT). rack-c never answers `lab`, though it answers a subnet without owners. PostgreSQL only.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { type DhcpPacket, decode } from '../../src/dhcp/packet.js';
import { openPgStore } from '../../src/store/pg.js';
import { adminQuery, backends, PG_URL, skipUnavailable } from '../store/backends.js';
import { ip4, listener, msgType, ports, request, SUBNET } from './helpers.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;
const child = fileURLToPath(new URL('./pg-daemon-child.ts', import.meta.url));
const procs: ChildProcess[] = [];
afterAll(() => {
  for (const p of procs) if (p.exitCode === null && !p.signalCode) p.kill('SIGKILL');
});
const GIADDR = '10.99.1.5';
const OPEN_GIADDR = '10.99.2.5';
const [A, B, C] = ['10.99.1.1', '10.99.1.2', '10.99.1.3'];
const mac = (i: number) => `52:54:03:00:00:${i.toString(16).padStart(2, '0')}`;
const sidOf = (p: DhcpPacket) => [...(p.options.get(Opt.ServerId) ?? [])].join('.');

function start(schema: string, port: number, relayPort: number, address: string, serverId: string) {
  const p = spawn(
    process.execPath,
    ['--import', 'tsx', child, PG_URL!, schema, String(port), String(relayPort), address, serverId],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  procs.push(p);
  return new Promise<ChildProcess>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`${serverId} did not start in 30 s`)), 30_000);
    p.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('READY')) {
        clearTimeout(t);
        res(p);
      }
    });
  });
}

describe('subnet owners: an HA pair and a non-owner on one PostgreSQL schema', () => {
  skipUnavailable(pgBackend);

  it('primary only while alive; standby past standbySecs and after the primary dies, same address; non-owner never', async () => {
    const { where: schema } = await pgBackend.db();
    const setup = await openPgStore(PG_URL!, { schema });
    await setup.create('subnets', 'lab', { ...SUBNET, owners: ['rack-a', 'rack-b'], standbySecs: 4 });
    await setup.create('subnets', 'open', {
      ...SUBNET,
      name: 'open',
      subnet: '10.99.2.0/24',
      activeStart: '10.99.2.100',
      activeEnd: '10.99.2.199',
      options: [],
    });
    await setup.close();
    const [pa, pb, pc] = [ports(), ports(), ports()];
    const relay = await listener(pa.relayPort);
    // The primary first: the others' first read of the daemons list then finds it beating.
    const a = await start(schema, pa.port, pa.relayPort, A, 'rack-a');
    await Promise.all([
      start(schema, pb.port, pa.relayPort, B, 'rack-b'),
      start(schema, pc.port, pa.relayPort, C, 'rack-c'),
    ]);
    const toAll = (p: DhcpPacket) => Promise.all([pa, pb, pc].map((x) => relay.send(p, x.port)));
    /** Every reply with this xid: the first within `firstMs`, then any other within `moreMs` of it. */
    const replies = async (xid: number, firstMs = 3000, moreMs = 800) => {
      const first = await relay.wait(xid, firstMs);
      if (!first) return [];
      const out = [first];
      const end = Date.now() + moreMs;
      for (let left = moreMs; left > 0; left = end - Date.now()) {
        const r = await relay.wait(xid, left);
        if (r) out.push(r);
      }
      return out;
    };
    const discover = (i: number, secs = 0, giaddr = GIADDR) =>
      request(MessageType.DISCOVER, mac(i), { giaddr, hops: 1, secs });
    const select = (i: number, offer: DhcpPacket, secs = 0) =>
      request(MessageType.REQUEST, mac(i), { xid: offer.xid, giaddr: GIADDR, hops: 1, secs }, [
        [Opt.ServerId, offer.options.get(Opt.ServerId)!],
        [Opt.RequestedIp, ip4(offer.yiaddr)],
      ]);
    const primaryLeases = new Map<number, string>();
    try {
      // 1. The primary alive: only it offers and ACKs, for three clients in turn.
      for (const i of [1, 2, 3]) {
        const d = discover(i);
        await toAll(d);
        const offers = await replies(d.xid);
        expect(offers.map((o) => [msgType(o), sidOf(o)])).toEqual([[MessageType.OFFER, A]]);
        const r = select(i, offers[0]!);
        await toAll(r);
        const acks = await replies(r.xid);
        expect(acks.map((o) => [msgType(o), sidOf(o)])).toEqual([[MessageType.ACK, A]]);
        primaryLeases.set(i, acks[0]!.yiaddr);
      }

      // 2. A client trying for standbySecs (4) gets the standby at once too; its REQUEST for the standby's OFFER
      // is the standby's to ACK.
      {
        const d = discover(10, 4);
        await toAll(d);
        const offers = await replies(d.xid);
        expect(new Set(offers.map(sidOf))).toEqual(new Set([A, B]));
        const fromB = offers.find((o) => sidOf(o) === B)!;
        const r = select(10, fromB, 4);
        await toAll(r);
        const acks = await replies(r.xid);
        expect(acks.map((o) => [msgType(o), sidOf(o), o.yiaddr])).toEqual([[MessageType.ACK, B, fromB.yiaddr]]);
      }
      // ...and below standbySecs, still only the primary.
      {
        const d = discover(11, 3);
        await toAll(d);
        expect((await replies(d.xid)).map(sidOf)).toEqual([A]);
      }

      // 3. rack-c is up and answers a subnet without owners.
      {
        const d = discover(20, 0, OPEN_GIADDR);
        await toAll(d);
        expect(new Set((await replies(d.xid)).map(sidOf))).toEqual(new Set([A, B, C]));
      }

      // 4. The primary killed: once its heartbeat is stale (3 s), the standby answers DISCOVER (bounded: 15 s),
      // offering the primary's client its own address (the lease is in the shared store), and ACKs it.
      a.kill('SIGKILL');
      const killedAt = Date.now();
      let offer: DhcpPacket | undefined;
      while (!offer && Date.now() - killedAt < 15_000) {
        const d = discover(3);
        await toAll(d);
        offer = (await replies(d.xid, 500, 0))[0];
      }
      expect(offer && [sidOf(offer), offer.yiaddr]).toEqual([B, primaryLeases.get(3)]);
      const r = select(3, offer!);
      await toAll(r);
      expect((await replies(r.xid)).map((o) => [msgType(o), sidOf(o), o.yiaddr])).toEqual([
        [MessageType.ACK, B, primaryLeases.get(3)],
      ]);
      // A client of the primary REBINDING (broadcast, relayed: ciaddr, no 54) keeps its address...
      const x = primaryLeases.get(1)!;
      const rebind = request(MessageType.REQUEST, mac(1), { giaddr: GIADDR, hops: 1, ciaddr: x });
      await toAll(rebind);
      expect((await replies(rebind.xid)).map((o) => [msgType(o), sidOf(o), o.yiaddr])).toEqual([
        [MessageType.ACK, B, x],
      ]);
      // ...and so does one rebooting (INIT-REBOOT: 50, no 54).
      const y = primaryLeases.get(2)!;
      const reboot = request(MessageType.REQUEST, mac(2), { giaddr: GIADDR, hops: 1 }, [[Opt.RequestedIp, ip4(y)]]);
      await toAll(reboot);
      expect((await replies(reboot.xid)).map((o) => [msgType(o), sidOf(o), o.yiaddr])).toEqual([
        [MessageType.ACK, B, y],
      ]);
    } finally {
      await relay.close();
      for (const p of procs) if (p.exitCode === null && !p.signalCode) p.kill('SIGTERM');
    }
    // rack-c never answered `lab` (every reply that reached the relay, by server and subnet).
    const all = relay.raw.map((b) => decode(b)).flatMap((r) => (r.ok ? [r.packet] : []));
    expect(all.filter((p) => sidOf(p) === C && p.giaddr === GIADDR)).toEqual([]);
    expect(all.filter((p) => sidOf(p) === C).length).toBe(1);
    // In the table: the primary's clients bound at their addresses.
    const rows = await adminQuery(`SELECT key, doc ->> 'mac' AS mac, doc ->> 'state' AS state FROM ${schema}.leases`);
    const byAddress = new Map(rows.rows.map((r) => [r.key as string, r]));
    for (const [i, address] of primaryLeases)
      expect(byAddress.get(address), `${mac(i)} ${address}`).toMatchObject({ mac: mac(i), state: 'bound' });
  }, 90_000);
});
