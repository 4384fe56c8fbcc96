/**
 * Issue 11, defect 6: DISCOVERs from random MACs that never REQUEST used to take every address of a pool for the
 * 60 s of their offers, machines of the inventory included. Unknown clients' outstanding offers are now capped
 * per pool (src/dhcp/offers.ts); these tests run the server on loopback with an injected clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { offerPolicy } from '../../src/dhcp/offers.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import type { DhcpServerOptions } from '../../src/dhcp/server.js';
import { ip4, msgType, request, SUBNET, type TestEnv, testEnv } from './helpers.js';

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

// The issue's setting: a /24's pool (245 addresses; the server is 10.99.1.1, the reservation 10.99.1.5).
const POOL = { ...SUBNET, activeStart: '10.99.1.10', activeEnd: '10.99.1.254' };
const KNOWN = '52:54:00:aa:00:01';
const RESERVED = '52:54:00:aa:00:02';
const randomMac = (i: number) =>
  `02:${[i >> 8, i & 0xff, ...Array.from({ length: 3 }, () => Math.floor(Math.random() * 256))]
    .map((b) => b.toString(16).padStart(2, '0'))
    .join(':')}`;

async function flooded(clock: { t: number }, flood: number, opts: Partial<DhcpServerOptions> = {}) {
  env = await testEnv(
    async (s) => {
      await s.create('subnets', 'lab', POOL);
      await s.create('machines', 'u-k', { uuid: 'u-k', name: 'known', macs: [KNOWN] }, [
        { field: 'macs', value: KNOWN },
      ]);
      await s.create('reservations', '10.99.1.5', {
        address: '10.99.1.5',
        mac: RESERVED,
        subnet: 'lab',
        options: [],
        description: '',
      });
    },
    { now: () => clock.t, ...opts },
  );
  // The flood: DISCOVERs from new MACs, none ever REQUESTs. Sent in bursts of 50 (bounded), then the replies
  // counted once the server has handled every one.
  const xids = new Map<number, string>();
  for (let i = 0; i < flood; i++) {
    const mac = randomMac(i);
    const d = request(MessageType.DISCOVER, mac, { flags: 0x8000 });
    xids.set(d.xid, mac);
    await env.client.send(d, env.p.port);
    if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
  }
  const deadline = Date.now() + 5000;
  while (env.server.stats.received < flood && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 100));
  return env.client.got
    .filter((g) => xids.has(g.pkt.xid) && msgType(g.pkt) === MessageType.OFFER)
    .map((g) => ({ mac: xids.get(g.pkt.xid)!, address: g.pkt.yiaddr }));
}

async function discover(e: TestEnv, mac: string) {
  const d = request(MessageType.DISCOVER, mac, { flags: 0x8000 });
  await e.client.send(d, e.p.port);
  return { d, offer: await e.client.wait(d.xid, 1000) };
}

describe('offers to unknown clients are capped per pool (issue 11)', () => {
  it('400 random-MAC DISCOVERs leave addresses for machines of the inventory; newcomers are served again once holds expire', async () => {
    const clock = { t: Date.now() };
    const offered = await flooded(clock, 400);

    // A machine of the inventory still gets an offer, and its REQUEST an ACK.
    const { d, offer } = await discover(env!, KNOWN);
    expect(msgType(offer)).toBe(MessageType.OFFER);
    const r = request(MessageType.REQUEST, KNOWN, { xid: d.xid, flags: 0x8000 }, [
      [Opt.ServerId, offer!.options.get(Opt.ServerId)!],
      [Opt.RequestedIp, ip4(offer!.yiaddr)],
    ]);
    await env!.client.send(r, env!.p.port);
    expect(msgType(await env!.client.wait(r.xid))).toBe(MessageType.ACK);
    // So does a reserved MAC (its own address, outside the pool).
    expect((await discover(env!, RESERVED)).offer?.yiaddr).toBe('10.99.1.5');
    // The code before offered all 245 addresses and nothing to the machine. Now: 62 offers before pressure
    // (a quarter of the free addresses), then this ingress's 50 a second (the injected clock stands still);
    // the cap itself (123, half the free addresses rounded up) is reached in the next test.
    expect(offered.length).toBe(62 + 50);
    expect(env!.server.stats.capped).toBe(400 - 112);

    // An unknown newcomer now: the unknown share is used up.
    expect((await discover(env!, '52:54:00:bb:00:01')).offer).toBeUndefined();
    // Offers made under pressure (the second half of the share) are held 10 s, not 60: they come back first.
    clock.t += 11_000;
    expect(msgType((await discover(env!, '52:54:00:bb:00:02')).offer)).toBe(MessageType.OFFER);
    // Every hold over: unknown clients are served as before.
    clock.t += 60_000;
    for (let i = 3; i < 8; i++)
      expect(msgType((await discover(env!, `52:54:00:bb:00:0${i}`)).offer)).toBe(MessageType.OFFER);
  });

  it('a client that repeats its DISCOVER keeps its offer even with the share used up', async () => {
    const clock = { t: Date.now() };
    const offered = await flooded(clock, 200, { unknownOfferRate: 0 });
    expect(offered.length).toBe(123); // half the 245 free addresses, rounded up
    expect(msgType((await discover(env!, '52:54:00:bb:01:01')).offer)).toBeUndefined();
    const again = await discover(env!, offered[0]!.mac);
    expect(again.offer?.yiaddr).toBe(offered[0]!.address);
    expect(env!.server.leases.get(offered[0]!.address)?.mac).toBe(offered[0]!.mac);
  });
});

describe('REQUESTs that skip the DISCOVER (issue 11)', () => {
  it('an unknown client SELECTING an address never offered to it is NAKed, not bound; a known machine may', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', POOL);
      await s.create('machines', 'u-k', { uuid: 'u-k', name: 'known', macs: [KNOWN] }, [
        { field: 'macs', value: KNOWN },
      ]);
    });
    const select = async (mac: string, address: string) => {
      const r = request(MessageType.REQUEST, mac, { flags: 0x8000 }, [
        [Opt.ServerId, ip4('10.99.1.1')],
        [Opt.RequestedIp, ip4(address)],
      ]);
      await env!.client.send(r, env!.p.port);
      return msgType(await env!.client.wait(r.xid));
    };
    // A flood of these bound one address per packet for a whole lease time (3600 s here), past the offer cap.
    for (let i = 0; i < 40; i++) expect(await select(randomMac(i), `10.99.1.${100 + i}`)).toBe(MessageType.NAK);
    expect(env.server.stats.acks).toBe(0);
    expect((await env.store.list('leases')).items.length).toBe(0);
    expect(await select(KNOWN, '10.99.1.120')).toBe(MessageType.ACK);
    // The NAKed client's DISCOVER and REQUEST: served as usual.
    const { ack } = await env.dora(randomMac(1));
    expect(msgType(ack)).toBe(MessageType.ACK);
  });
});

describe('offerPolicy', () => {
  const pool = { name: 'p', start: 1, end: 1000 };
  it('caps at the share of free addresses (rounded up), shortens holds and limits the rate per ingress under pressure', () => {
    const clock = { t: 0 };
    const p = offerPolicy({ offerSeconds: 60, now: () => clock.t, ingressRate: 50 });
    const holds: number[] = [];
    let refused = 0;
    for (let i = 0; i < 600; i++) {
      // Rotating ingresses: the rate limit (50 a second each) is not the limit here.
      const a = p.admit(pool, () => 0, `if/${i % 20}`);
      if (!a.ok) {
        refused++;
        continue;
      }
      holds.push(a.seconds);
      p.track('p', i + 1, a.seconds);
    }
    expect(holds.length).toBe(500); // 50% of 1000 free
    expect(refused).toBe(100);
    expect(holds.filter((h) => h === 60).length).toBe(250);
    expect(holds.filter((h) => h === 10).length).toBe(250);
    // A bound address leaves the share; a renewal is never refused.
    p.settle(1);
    expect(p.outstanding('p')).toBe(499);
    expect(p.admit(pool, () => 0, 'x', true).ok).toBe(true);
    // Under pressure, one ingress gets at most 50 new offers a second.
    clock.t += 11_000; // the 10 s holds expire: 249 outstanding, one short of pressure (2n >= cap)
    let one = 0;
    for (let i = 0; i < 200; i++) {
      const a = p.admit(pool, () => 0, 'relay/10.0.0.1');
      if (a.ok) {
        one++;
        p.track('p', 2000 + i, a.seconds);
      }
    }
    expect(one).toBe(1 + 50); // one before pressure, then the bucket's 50
    expect(p.outstanding('p')).toBe(249 + 51);
  });

  it("a pool's own unknownOfferShare overrides the default: 1 keeps no share, 0 makes no offers to unknown clients", () => {
    const p = offerPolicy({ offerSeconds: 60, now: () => 0, ingressRate: 0 });
    let all = 0;
    for (let i = 0; i < 200; i++) {
      const a = p.admit({ ...pool, name: 'all', unknownOfferShare: 1 }, () => 900, 'i');
      if (a.ok) {
        all++;
        p.track('all', 10_000 + i, a.seconds);
      }
    }
    expect(all).toBe(100); // every free address
    expect(p.admit({ ...pool, name: 'none', unknownOfferShare: 0 }, () => 0, 'i').ok).toBe(false);
    expect(p.admit({ ...pool, name: 'none', unknownOfferShare: 0 }, () => 0, 'i', true).ok).toBe(true);
    // Out of range: the default share.
    expect(p.admit({ ...pool, name: 'bad', unknownOfferShare: 7 }, () => 0, 'i').ok).toBe(true);
  });

  it('counts bound and declined addresses out of the free ones', () => {
    const p = offerPolicy({ offerSeconds: 60, now: () => 0, ingressRate: 0 });
    p.track('p', 1, 60);
    // 1000 in the pool, 990 bound: 10 free, at most 5 to unknown clients.
    let ok = 0;
    for (let i = 0; i < 20; i++) {
      const a = p.admit(pool, () => 990, 'i');
      if (a.ok) {
        ok++;
        p.track('p', 10 + i, a.seconds);
      }
    }
    expect(ok + 1).toBe(5);
  });
});
