/**
 * RFC 2131/2132 (and RFC 6842) rules that conformance suites (ISC forge, kea's system tests) check on a server:
 * client identifier as the client's identity, requested lease time, server identifier checks, INFORM,
 * option 55 order, DECLINE/RELEASE from the lease's owner only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadLeaseTable } from '../../src/dhcp/leases.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { decode, encode } from '../../src/dhcp/packet.js';
import { createBus } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { ip4, listener, msgType, request, type TestEnv, testEnv } from './helpers.js';

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

const cid = (s: string) => Buffer.from(`00${Buffer.from(s).toString('hex')}`, 'hex');
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const MAC = '52:54:00:00:01:01';

async function send(e: TestEnv, type: number, mac: string, extra = {}, options: [number, Buffer][] = []) {
  const p = request(type, mac, { flags: 0x8000, ...extra }, options);
  await e.client.send(p, e.p.port);
  return {
    xid: p.xid,
    reply: await e.client.wait(
      p.xid,
      type === MessageType.DISCOVER || type === MessageType.REQUEST || type === MessageType.INFORM ? 1000 : 200,
    ),
  };
}

describe('client identifier (RFC 2131 4.2, RFC 6842)', () => {
  it('two clients behind one MAC with different identifiers get different addresses; each keeps its own', async () => {
    env = await testEnv();
    const a = await env.dora(MAC, [[Opt.ClientId, cid('os-a')]]);
    const b = await env.dora(MAC, [[Opt.ClientId, cid('os-b')]]);
    expect(msgType(a.ack)).toBe(MessageType.ACK);
    expect(msgType(b.ack)).toBe(MessageType.ACK);
    expect(b.ack!.yiaddr).not.toBe(a.ack!.yiaddr);
    // Both leases stay bound: B did not take A's over.
    expect((await env.store.get('leases', a.ack!.yiaddr))?.doc).toMatchObject({ state: 'bound' });
    expect((await env.store.get('leases', b.ack!.yiaddr))?.doc).toMatchObject({ state: 'bound' });
    const a2 = await env.dora(MAC, [[Opt.ClientId, cid('os-a')]]);
    expect(a2.ack!.yiaddr).toBe(a.ack!.yiaddr);
  });

  it('one identifier on a new MAC (a moved disk, a new NIC) is the same client and keeps its address', async () => {
    env = await testEnv();
    const a = await env.dora(MAC, [[Opt.ClientId, cid('host-1')]]);
    const moved = await env.dora('52:54:00:00:01:02', [[Opt.ClientId, cid('host-1')]]);
    expect(moved.ack!.yiaddr).toBe(a.ack!.yiaddr);
    expect((await env.store.get('leases', a.ack!.yiaddr))?.doc).toMatchObject({ mac: '52:54:00:00:01:02' });
  });

  it('a PXE ROM without option 61 and the OS with it share one lease (the MAC decides when one side has none)', async () => {
    env = await testEnv();
    const rom = await env.dora(MAC);
    const os = await env.dora(MAC, [[Opt.ClientId, cid('os')]]);
    expect(os.ack!.yiaddr).toBe(rom.ack!.yiaddr);
    const rom2 = await env.dora(MAC);
    expect(rom2.ack!.yiaddr).toBe(rom.ack!.yiaddr);
    // The identifier stays on the lease, so the OS still finds it by identifier.
    expect((await env.store.get('leases', rom.ack!.yiaddr))?.doc).toMatchObject({
      clientId: cid('os').toString('hex'),
    });
  });

  it('SELECTING: a REQUEST for an address offered to another identifier on the same MAC is NAKed', async () => {
    env = await testEnv();
    const a = await env.dora(MAC, [[Opt.ClientId, cid('a')]]);
    const { reply } = await send(env, MessageType.REQUEST, MAC, {}, [
      [Opt.ClientId, cid('b')],
      [Opt.ServerId, ip4('10.99.1.1')],
      [Opt.RequestedIp, ip4(a.ack!.yiaddr)],
    ]);
    expect(msgType(reply)).toBe(MessageType.NAK);
    // RFC 6842: the identifier is echoed in a NAK too.
    expect(reply!.options.get(Opt.ClientId)).toEqual(cid('b'));
  });

  it('is echoed in OFFER and ACK', async () => {
    env = await testEnv();
    const { offer, ack } = await env.dora(MAC, [[Opt.ClientId, cid('echo')]]);
    expect(offer!.options.get(Opt.ClientId)).toEqual(cid('echo'));
    expect(ack!.options.get(Opt.ClientId)).toEqual(cid('echo'));
    const plain = await env.dora('52:54:00:00:01:09');
    expect(plain.ack!.options.has(Opt.ClientId)).toBe(false);
  });

  it('a reservation stays by MAC whatever identifier the client sends', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', {
        name: 'lab',
        subnet: '10.99.1.0/24',
        activeStart: '10.99.1.100',
        activeEnd: '10.99.1.199',
      });
      await s.create('reservations', '10.99.1.50', { address: '10.99.1.50', mac: MAC, subnet: 'lab' });
    });
    const { ack } = await env.dora(MAC, [[Opt.ClientId, cid('anything')]]);
    expect(ack!.yiaddr).toBe('10.99.1.50');
    const other = await env.dora('52:54:00:00:01:02', [[Opt.ClientId, cid('anything')]]);
    expect(other.ack!.yiaddr).not.toBe('10.99.1.50');
  });

  it('leases written before identifiers were keys still load: by identifier when stored, else by MAC', async () => {
    const store = openSqliteStore(':memory:');
    const t = '2030-01-01T00:00:00.000Z';
    await store.putBatched('leases', '10.99.1.100', {
      address: '10.99.1.100',
      mac: MAC,
      subnet: 'lab',
      state: 'bound',
      expiresAt: t,
    });
    await store.putBatched('leases', '10.99.1.101', {
      address: '10.99.1.101',
      mac: '52:54:00:00:01:02',
      subnet: 'lab',
      state: 'bound',
      expiresAt: t,
      clientId: 'ff01',
    });
    const table = await loadLeaseTable({ store, bus: createBus(), log: silentLogger });
    expect(table.forMac('lab', MAC)?.address).toBe('10.99.1.100');
    expect(table.forMac('lab', { mac: MAC, id: '0001' })?.address).toBe('10.99.1.100');
    expect(table.forMac('lab', { mac: 'aa:aa:aa:aa:aa:aa', id: 'ff01' })?.address).toBe('10.99.1.101');
    expect(table.forMac('lab', { mac: '52:54:00:00:01:02', id: 'ff02' })).toBeUndefined();
    await store.close();
  });
});

describe('lease time (option 51)', () => {
  it('a shorter requested lease time is honoured, a longer one capped at the subnet, T1/T2 follow', async () => {
    env = await testEnv();
    const short = await env.dora(MAC, [[Opt.LeaseTime, u32(600)]]);
    expect(short.offer!.options.get(Opt.LeaseTime)!.readUInt32BE(0)).toBe(600);
    expect(short.ack!.options.get(Opt.LeaseTime)!.readUInt32BE(0)).toBe(600);
    expect(short.ack!.options.get(Opt.RenewalTime)!.readUInt32BE(0)).toBe(300);
    expect(short.ack!.options.get(Opt.RebindingTime)!.readUInt32BE(0)).toBe(525);
    const stored = (await env.store.get('leases', short.ack!.yiaddr))!.doc as { expiresAt: string };
    expect(Date.parse(stored.expiresAt) - Date.now()).toBeLessThan(601_000);
    const long = await env.dora('52:54:00:00:01:02', [[Opt.LeaseTime, u32(0xffffffff)]]);
    expect(long.ack!.options.get(Opt.LeaseTime)!.readUInt32BE(0)).toBe(3600);
    const tiny = await env.dora('52:54:00:00:01:03', [[Opt.LeaseTime, u32(1)]]);
    expect(tiny.ack!.options.get(Opt.LeaseTime)!.readUInt32BE(0)).toBe(60);
  });
});

describe('RFC 2131 4.3 server rules', () => {
  it('a REQUEST naming another server (SELECTING) gets no reply and frees the offer', async () => {
    env = await testEnv();
    const d = await send(env, MessageType.DISCOVER, MAC);
    const offered = d.reply!.yiaddr;
    const { reply } = await send(env, MessageType.REQUEST, MAC, { xid: d.xid }, [
      [Opt.ServerId, ip4('10.99.1.254')],
      [Opt.RequestedIp, ip4(offered)],
    ]);
    expect(reply).toBeUndefined();
    // The offered address is free again for another client right away.
    const other = await send(env, MessageType.DISCOVER, '52:54:00:00:01:02', {}, [[Opt.RequestedIp, ip4(offered)]]);
    expect(other.reply!.yiaddr).toBe(offered);
  });

  it('RENEWING (ciaddr, no 54, no 50) is ACKed with ciaddr kept; NAKs are broadcast with yiaddr and ciaddr 0', async () => {
    env = await testEnv();
    const a = await env.dora(MAC);
    const addr = a.ack!.yiaddr;
    const renew = await send(env, MessageType.REQUEST, MAC, { ciaddr: addr, flags: 0 });
    expect(msgType(renew.reply)).toBe(MessageType.ACK);
    expect(renew.reply!.ciaddr).toBe(addr);
    expect(renew.reply!.yiaddr).toBe(addr);
    expect(env.dests.at(-1)).toMatchObject({ address: addr });
    // Someone else renewing that address: NAK, broadcast (RFC 2131 4.1: giaddr 0 -> NAK to 255.255.255.255).
    const thief = await send(env, MessageType.REQUEST, '52:54:00:00:01:02', { ciaddr: addr, flags: 0 });
    expect(msgType(thief.reply)).toBe(MessageType.NAK);
    expect(thief.reply!.yiaddr).toBe('0.0.0.0');
    expect(thief.reply!.ciaddr).toBe('0.0.0.0');
    expect(thief.reply!.options.has(Opt.LeaseTime)).toBe(false);
    expect(thief.reply!.options.get(Opt.ServerId)).toEqual(ip4('10.99.1.1'));
    expect(env.dests.at(-1)).toMatchObject({ address: '255.255.255.255' });
  });

  it('INFORM: an ACK with no yiaddr and no lease times, to ciaddr, and no lease is made', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', {
        name: 'lab',
        subnet: '10.99.1.0/24',
        activeStart: '10.99.1.100',
        activeEnd: '10.99.1.199',
        // An operator option 58 must not leak into an INFORM reply either.
        options: [
          { code: 3, value: '10.99.1.1' },
          { code: 58, value: 100 },
        ],
      });
    });
    const { reply } = await send(env, MessageType.INFORM, MAC, { ciaddr: '10.99.1.77', flags: 0 });
    expect(msgType(reply)).toBe(MessageType.ACK);
    expect(reply!.yiaddr).toBe('0.0.0.0');
    expect(reply!.ciaddr).toBe('10.99.1.77');
    for (const c of [Opt.LeaseTime, Opt.RenewalTime, Opt.RebindingTime]) expect(reply!.options.has(c)).toBe(false);
    expect(reply!.options.get(Opt.ServerId)).toEqual(ip4('10.99.1.1'));
    expect(reply!.options.get(Opt.Router)).toEqual(ip4('10.99.1.1'));
    expect(env.dests.at(-1)).toMatchObject({ address: '10.99.1.77' });
    expect(await env.store.get('leases', '10.99.1.77')).toBeUndefined();
  });

  it('every reply carries option 54 and options in the order of the parameter request list (55)', async () => {
    env = await testEnv();
    const prl = Buffer.from([Opt.Router, Opt.LeaseTime, Opt.SubnetMask, Opt.BroadcastAddress]);
    const { offer, ack } = await env.dora(MAC, [[Opt.ParamRequestList, prl]]);
    for (const r of [offer!, ack!]) {
      expect(r.options.get(Opt.ServerId)).toEqual(ip4('10.99.1.1'));
      const order = [...r.options.keys()];
      expect(order.slice(0, 2)).toEqual([Opt.MessageType, Opt.ServerId]);
      const requested = order.filter((c) => prl.includes(c));
      expect(requested).toEqual([...prl]);
      expect(order.indexOf(Opt.Router)).toBeLessThan(order.indexOf(Opt.RenewalTime));
    }
  });

  it('option 57: a reply fits the client maximum, unrequested options dropped first', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', {
        name: 'lab',
        subnet: '10.99.1.0/24',
        activeStart: '10.99.1.100',
        activeEnd: '10.99.1.199',
        options: [
          { code: 3, value: '10.99.1.1' },
          { code: 15, value: 'x'.repeat(250) },
          { code: 17, value: 'r'.repeat(250) },
          { code: 40, value: 'n'.repeat(250) },
        ],
      });
    });
    const mms = Buffer.alloc(2);
    mms.writeUInt16BE(576);
    const d = request(MessageType.DISCOVER, MAC, { flags: 0x8000 }, [
      [Opt.MaxMessageSize, mms],
      [Opt.ParamRequestList, Buffer.from([1, 3, 40])],
    ]);
    await env.client.send(d, env.p.port);
    const offer = await env.client.wait(d.xid);
    expect(msgType(offer)).toBe(MessageType.OFFER);
    const raw = env.client.raw.at(-1)!;
    expect(raw.length).toBeLessThanOrEqual(576 - 28);
    expect(offer!.options.get(40)?.length).toBe(250);
    expect(offer!.options.get(Opt.Router)).toEqual(ip4('10.99.1.1'));
    // A bad option 57 (under 576) counts as 576.
    mms.writeUInt16BE(100);
    const d2 = request(MessageType.DISCOVER, '52:54:00:00:01:02', { flags: 0x8000 }, [[Opt.MaxMessageSize, mms]]);
    await env.client.send(d2, env.p.port);
    expect(msgType(await env.client.wait(d2.xid))).toBe(MessageType.OFFER);
    expect(env.client.raw.at(-1)!.length).toBeLessThanOrEqual(576 - 28);
  });

  it('RELEASE and DECLINE count only from the lease owner (MAC and identifier) and only for this server', async () => {
    env = await testEnv();
    const a = await env.dora(MAC, [[Opt.ClientId, cid('owner')]]);
    const addr = a.ack!.yiaddr;
    const state = async () => ((await env!.store.get('leases', addr))?.doc as { state?: string } | undefined)?.state;
    // Same MAC, another identifier: not the owner.
    await send(env, MessageType.RELEASE, MAC, { ciaddr: addr, flags: 0 }, [
      [Opt.ClientId, cid('other')],
      [Opt.ServerId, ip4('10.99.1.1')],
    ]);
    await send(env, MessageType.DECLINE, MAC, {}, [
      [Opt.ClientId, cid('other')],
      [Opt.ServerId, ip4('10.99.1.1')],
      [Opt.RequestedIp, ip4(addr)],
    ]);
    // The owner, but addressed to another server.
    await send(env, MessageType.RELEASE, MAC, { ciaddr: addr, flags: 0 }, [
      [Opt.ClientId, cid('owner')],
      [Opt.ServerId, ip4('10.99.1.254')],
    ]);
    await send(env, MessageType.DECLINE, MAC, {}, [
      [Opt.ClientId, cid('owner')],
      [Opt.ServerId, ip4('10.99.1.254')],
      [Opt.RequestedIp, ip4(addr)],
    ]);
    expect(await state()).toBe('bound');
    expect(env.server.stats.releases + env.server.stats.declines).toBe(0);
    await send(env, MessageType.RELEASE, MAC, { ciaddr: addr, flags: 0 }, [
      [Opt.ClientId, cid('owner')],
      [Opt.ServerId, ip4('10.99.1.1')],
    ]);
    expect(env.server.stats.releases).toBe(1);
    expect(await state()).toBe('released');
  });

  it('INIT-REBOOT: silent without any record of the client, NAK when it holds another address, ACK for its own', async () => {
    env = await testEnv();
    const silent = await send(env, MessageType.REQUEST, MAC, {}, [[Opt.RequestedIp, ip4('10.99.1.150')]]);
    expect(silent.reply).toBeUndefined();
    const a = await env.dora(MAC);
    const wrong = await send(env, MessageType.REQUEST, MAC, {}, [[Opt.RequestedIp, ip4('10.99.1.150')]]);
    expect(msgType(wrong.reply)).toBe(MessageType.NAK);
    const own = await send(env, MessageType.REQUEST, MAC, {}, [[Opt.RequestedIp, ip4(a.ack!.yiaddr)]]);
    expect(msgType(own.reply)).toBe(MessageType.ACK);
  });

  it('RENEWING/REBINDING a lease that has ended is NAKed (the client starts over)', async () => {
    let t = Date.now();
    env = await testEnv(undefined, { now: () => t });
    const a = await env.dora(MAC, [[Opt.LeaseTime, u32(60)]]);
    t += 61_000;
    const late = await send(env, MessageType.REQUEST, MAC, { ciaddr: a.ack!.yiaddr, flags: 0x8000 });
    expect(msgType(late.reply)).toBe(MessageType.NAK);
  });

  it('SELECTING without option 50 confirms the address offered; a relayed REQUEST with nothing to confirm is NAKed', async () => {
    env = await testEnv();
    const d = await send(env, MessageType.DISCOVER, MAC);
    const r = await send(env, MessageType.REQUEST, MAC, { xid: d.xid }, [[Opt.ServerId, ip4('10.99.1.1')]]);
    expect(msgType(r.reply)).toBe(MessageType.ACK);
    expect(r.reply!.yiaddr).toBe(d.reply!.yiaddr);
    // Direct with neither 50, 54 nor ciaddr: silence; relayed: NAK (kea, Forge).
    expect((await send(env, MessageType.REQUEST, '52:54:00:00:01:02')).reply).toBeUndefined();
    const relayed = request(MessageType.REQUEST, '52:54:00:00:01:02', { giaddr: '10.99.1.2' });
    const relay = await listener(env.p.relayPort);
    try {
      await relay.send(relayed, env.p.port);
      expect(msgType(await relay.wait(relayed.xid))).toBe(MessageType.NAK);
    } finally {
      await relay.close();
    }
  });

  it('a DECLINE without option 54 is ignored (RFC 2131 table 5: 54 MUST)', async () => {
    env = await testEnv();
    const a = await env.dora(MAC);
    await send(env, MessageType.DECLINE, MAC, {}, [[Opt.RequestedIp, ip4(a.ack!.yiaddr)]]);
    expect(env.server.stats.declines).toBe(0);
    expect((await env.store.get('leases', a.ack!.yiaddr))?.doc).toMatchObject({ state: 'bound' });
  });

  it("siaddr is the subnet's next server for every client (RFC 2131 table 3), 0 in a NAK", async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', {
        name: 'lab',
        subnet: '10.99.1.0/24',
        activeStart: '10.99.1.100',
        activeEnd: '10.99.1.199',
        nextServer: '10.99.1.9',
      });
    });
    const { offer, ack } = await env.dora(MAC);
    expect(offer!.siaddr).toBe('10.99.1.9');
    expect(ack!.siaddr).toBe('10.99.1.9');
    const nak = await send(env, MessageType.REQUEST, '52:54:00:00:01:02', {}, [
      [Opt.ServerId, ip4('10.99.1.1')],
      [Opt.RequestedIp, ip4(ack!.yiaddr)],
    ]);
    expect(msgType(nak.reply)).toBe(MessageType.NAK);
    expect(nak.reply!.siaddr).toBe('0.0.0.0');
  });

  it('an OFFER is a BOOTREPLY with ciaddr 0, xid/chaddr/flags/giaddr copied, at least 300 bytes', async () => {
    env = await testEnv();
    const d = request(MessageType.DISCOVER, MAC, { flags: 0x8000 });
    await env.client.send(d, env.p.port);
    const offer = await env.client.wait(d.xid);
    const raw = env.client.raw.at(-1)!;
    expect(raw.length).toBeGreaterThanOrEqual(300);
    const again = decode(encode(offer!));
    expect(again.ok).toBe(true);
    expect(offer!.op).toBe(2);
    expect(offer!.ciaddr).toBe('0.0.0.0');
    expect(offer!.flags).toBe(0x8000);
    expect(offer!.chaddr.subarray(0, 6).toString('hex')).toBe(MAC.replace(/:/g, ''));
  });
});
