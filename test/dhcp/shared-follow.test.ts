/**
 * Two DHCP servers in one process on one PostgreSQL schema (issue 17), started before any lease: what one ACKs,
 * releases or declines reaches the other's lease index within about a second (its catch-up timer, default 1 s),
 * held counts included; a RELEASE or DECLINE naming a server whose index never saw the lease (here: its timer
 * off) is acted on from the store's row, not ignored. Given serverIds, each lease names the server that last wrote
 * it (the sweep's, the sweeper), and a server's catch-up reads return the other's rows, never its own. PostgreSQL
 * only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import type { DhcpPacket } from '../../src/dhcp/packet.js';
import { type DhcpServer, startDhcpServer } from '../../src/dhcp/server.js';
import { createBus } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import type { Doc, LeaseChanges, Store } from '../../src/store/store.js';
import { backends, skipUnavailable } from '../store/backends.js';
import { ip4, listener, msgType, ports, request, SUBNET } from './helpers.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;
const GIADDR = '10.99.1.5';
const mac = (i: number) => `52:54:05:00:00:0${i}`;
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => {});
});

/** The rows a store's catch-up reads returned, as `address state serverId`. */
function counted(store: Store, seen: string[]): Store {
  const read = store.leaseChanges!.bind(store);
  return Object.assign(store, {
    leaseChanges: async (cursor?: string): Promise<LeaseChanges> => {
      const got = await read(cursor);
      for (const d of got.docs) seen.push(`${d.address} ${d.state} ${d.serverId ?? '-'}`);
      return got;
    },
  });
}

/** `named`: each server (and its store) has a serverId, rack-a and rack-b, and a clock `skew` ms ahead. */
async function twoServers(followB?: number, named = false) {
  const db = await pgBackend.db();
  const setup = await db.open();
  await setup.create('subnets', 'lab', { ...SUBNET, activeStart: '10.99.1.100', activeEnd: '10.99.1.103' });
  const [pa, pb] = [ports(), ports()];
  const relay = await listener(pa.relayPort);
  closers.push(() => relay.close());
  const clock = { skew: 0 };
  const seen = { a: [] as string[], b: [] as string[] };
  const start = async (store: Store, p: ReturnType<typeof ports>, serverAddress: string, leaseFollowMs?: number) => {
    const serverId = named ? (serverAddress === '10.99.1.1' ? 'rack-a' : 'rack-b') : undefined;
    const s = await startDhcpServer({
      ...(serverId ? { serverId, now: () => Date.now() + clock.skew } : {}),
      store,
      bus: createBus(),
      log: silentLogger,
      httpPort: 8080,
      ...p,
      relayPort: pa.relayPort,
      serverAddress,
      wildcard: true,
      replyTo: (d) => ({ address: '127.0.0.1', port: d.port }),
      ...(leaseFollowMs === undefined ? {} : { leaseFollowMs }),
    });
    closers.push(() => s.close());
    return s;
  };
  const stores = [await db.open({ serverId: 'rack-a' }), await db.open({ serverId: 'rack-b' })] as const;
  const a = await start(counted(stores[0], seen.a), pa, '10.99.1.1');
  const b = await start(counted(stores[1], seen.b), pb, '10.99.1.2', followB);
  /** A relayed DORA through one server; the ACK's address. */
  const dora = async (i: number, port: number) => {
    const d = request(MessageType.DISCOVER, mac(i), { giaddr: GIADDR, hops: 1 });
    await relay.send(d, port);
    const offer = await relay.wait(d.xid, 2000);
    expect(msgType(offer)).toBe(MessageType.OFFER);
    const r = request(MessageType.REQUEST, mac(i), { xid: d.xid, giaddr: GIADDR, hops: 1 }, [
      [Opt.ServerId, offer!.options.get(Opt.ServerId)!],
      [Opt.RequestedIp, ip4(offer!.yiaddr)],
    ]);
    await relay.send(r, port);
    const ack = await relay.wait(d.xid, 2000);
    expect(msgType(ack)).toBe(MessageType.ACK);
    return ack!.yiaddr;
  };
  /** A relayed RELEASE or DECLINE of `address` naming `server` (54), sent to `port`. */
  const drop = async (type: number, i: number, address: string, server: string, port: number) => {
    const p: DhcpPacket =
      type === MessageType.RELEASE
        ? request(type, mac(i), { ciaddr: address, giaddr: GIADDR, hops: 1 }, [[Opt.ServerId, ip4(server)]])
        : request(type, mac(i), { giaddr: GIADDR, hops: 1 }, [
            [Opt.ServerId, ip4(server)],
            [Opt.RequestedIp, ip4(address)],
          ]);
    await relay.send(p, port);
  };
  return { a, b, pa, pb, dora, drop, setup, stores, seen, clock };
}

const lab = (s: DhcpServer) => s.inventory.subnets().find((x) => x.name === 'lab')!;

describe('two DHCP servers on one PostgreSQL schema: lease indexes follow each other', () => {
  skipUnavailable(pgBackend);

  it("B's index learns A's ACKs, RELEASE and DECLINE within about a second", async () => {
    const { a, b, pa, dora, drop } = await twoServers();
    const t0 = Date.now();
    const got = [await dora(1, pa.port), await dora(2, pa.port), await dora(3, pa.port)];
    await expect
      .poll(() => got.map((x) => b.leases.get(x)?.state), { timeout: 2500, interval: 20 })
      .toEqual(['bound', 'bound', 'bound']);
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(b.leases.forMac('lab', mac(2))?.address).toBe(got[1]);
    expect(b.leases.held(lab(b))).toBe(3);
    expect(a.leases.held(lab(a))).toBe(3);

    await drop(MessageType.RELEASE, 1, got[0]!, '10.99.1.1', pa.port);
    await drop(MessageType.DECLINE, 2, got[1]!, '10.99.1.1', pa.port);
    await expect
      .poll(() => [b.leases.get(got[0]!)?.state, b.leases.get(got[1]!)?.state], { timeout: 2500, interval: 20 })
      .toEqual(['released', 'declined']);
    // One bound, one quarantined.
    expect(b.leases.held(lab(b))).toBe(2);
  }, 20_000);

  it('a RELEASE or DECLINE naming B for a lease its index never saw is read from the store', async () => {
    // B's catch-up timer far off: only the store's row tells B of A's leases.
    const { b, pa, pb, dora, drop, setup } = await twoServers(3_600_000);
    const x = await dora(1, pa.port);
    const y = await dora(2, pa.port);
    expect(b.leases.get(x)).toBeUndefined();
    await drop(MessageType.RELEASE, 1, x, '10.99.1.2', pb.port);
    await drop(MessageType.DECLINE, 2, y, '10.99.1.2', pb.port);
    await expect.poll(async () => (await setup.get('leases', x))?.doc.state, { timeout: 2500 }).toBe('released');
    await expect.poll(async () => (await setup.get('leases', y))?.doc.state, { timeout: 2500 }).toBe('declined');
    expect(b.leases.get(x)?.state).toBe('released');
  }, 20_000);

  it('each lease names the server that wrote it, a swept one the sweeper; neither reads its own rows', async () => {
    const { a, b, pa, pb, dora, drop, setup, stores, seen, clock } = await twoServers(undefined, true);
    const x = await dora(1, pa.port);
    const y = await dora(2, pb.port);
    const writer = async (address: string) => ((await setup.get('leases', address))?.doc as Doc | undefined)?.serverId;
    expect([await writer(x), await writer(y)]).toEqual(['rack-a', 'rack-b']);
    await expect
      .poll(() => [b.leases.get(x)?.state, a.leases.get(y)?.state], { timeout: 2500, interval: 20 })
      .toEqual(['bound', 'bound']);
    // B releases A's lease: B's row now, read by A.
    await drop(MessageType.RELEASE, 1, x, '10.99.1.2', pb.port);
    await expect.poll(() => writer(x), { timeout: 2500 }).toBe('rack-b');
    await expect.poll(() => a.leases.get(x)?.state, { timeout: 2500, interval: 20 }).toBe('released');
    // Two hours on, y has ended: A's reclaim pass marks it in A's index, A's sweep (as leader) in the table.
    clock.skew = 2 * 3_600_000;
    expect(a.leases.reclaim()).toBe(1);
    expect(a.leases.get(y)?.state).toBe('expired');
    expect(await stores[0].expireLeases!(new Date(Date.now() + clock.skew - 10_000).toISOString())).toHaveLength(1);
    expect(await writer(y)).toBe('rack-a');
    await expect.poll(() => seen.b.includes(`${y} expired rack-a`), { timeout: 2500, interval: 20 }).toBe(true);
    // What each read: the other's rows only (offers and ACKs, the release, the sweep), none of its own.
    await Promise.all([a.leases.catchUp(), b.leases.catchUp()]);
    expect(seen.a.length).toBeGreaterThan(0);
    expect(seen.a.filter((r) => !r.endsWith(' rack-b'))).toEqual([]);
    expect(seen.b.filter((r) => !r.endsWith(' rack-a'))).toEqual([]);
    expect(seen.a).toContain(`${x} released rack-b`);
  }, 20_000);
});
