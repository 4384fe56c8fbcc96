/**
 * The RFC 2131 state machine without sockets: requests go straight into answerRequest (and the proxy answerers)
 * with an in-memory lease table (SQLite :memory:), a fixed machine table and the real boot decision; the tests
 * read the reply packet, its delivery kind, the silence reasons and the lease table.
 */
import { describe, expect, it, vi } from 'vitest';
import type { Quirk } from '../../src/boot/quirks.js';
import { announceBoot, type BootOffer, type Decide } from '../../src/dhcp/boot.js';
import type { CachedMachine } from '../../src/dhcp/machines.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { type DhcpPacket, decode } from '../../src/dhcp/packet.js';
import { answerBootServer } from '../../src/dhcp/proxy.js';
import { finishReply } from '../../src/dhcp/reply.js';
import { answerRequest } from '../../src/dhcp/state-machine.js';
import { silentLogger } from '../../src/log.js';
import { Reservation } from '../../src/model/subnet.js';
import { ip4 } from './helpers.js';
import { bound, machine, OTHER_SERVER, pkt, replied, SERVER, silent, subnet, typeOf, u32 } from './machine-harness.js';

describe('DHCP state machine (no sockets)', () => {
  it('DISCOVER -> OFFER from the pool, with server id, lease times and the RFC 2131 4.1 delivery kind', async () => {
    const m = await machine();
    const o = replied(await m.ask(pkt(MessageType.DISCOVER, 'aa:00:00:00:00:01')));
    expect(typeOf(o)).toBe(MessageType.OFFER);
    expect(o.count).toBe('offers');
    expect(o.reply.yiaddr).toBe('10.99.1.100');
    expect([...o.reply.options.get(Opt.ServerId)!]).toEqual([10, 99, 1, 2]);
    expect(u32(o.reply.options.get(Opt.LeaseTime))).toBe(3600);
    expect(u32(o.reply.options.get(Opt.RenewalTime))).toBe(1800);
    expect(o.delivery).toBe('unicast-chaddr-arp');
    expect(m.leases.get('10.99.1.100')).toMatchObject({ state: 'offered', mac: 'aa:00:00:00:00:01' });
    // A second client gets the next address; the broadcast flag and a relay change only the delivery.
    const b = replied(await m.ask(pkt(MessageType.DISCOVER, 'aa:00:00:00:00:02', { flags: 0x8000 })));
    expect(b.reply.yiaddr).toBe('10.99.1.101');
    expect(b.delivery).toBe('broadcast');
    const r = replied(await m.ask(pkt(MessageType.DISCOVER, 'aa:00:00:00:00:03', { giaddr: '10.99.1.254' })));
    expect(r.delivery).toBe('relay');
    // Not a boot client: no boot decision.
    expect(o.boot).toBeUndefined();
    expect(o.reply.options.has(Opt.BootfileName)).toBe(false);
  });

  it('a reservation wins over the pool, with the reserved lease time', async () => {
    const res = Reservation.parse({ subnet: 'lab', mac: 'aa:00:00:00:00:05', address: '10.99.1.50' });
    const m = await machine({ reservations: [res] });
    const o = replied(
      await m.ask(pkt(MessageType.DISCOVER, 'aa:00:00:00:00:05', {}, [[Opt.RequestedIp, ip4('10.99.1.150')]])),
    );
    expect(o.reply.yiaddr).toBe('10.99.1.50');
    expect(u32(o.reply.options.get(Opt.LeaseTime))).toBe(7200);
    // The reserved address is never offered to another client, even when asked for.
    const other = replied(
      await m.ask(pkt(MessageType.DISCOVER, 'aa:00:00:00:00:06', {}, [[Opt.RequestedIp, ip4('10.99.1.50')]])),
    );
    expect(other.reply.yiaddr).not.toBe('10.99.1.50');
  });

  it('REQUEST SELECTING this server: ACK and a bound lease; naming another server: silence and the offer is freed', async () => {
    const m = await machine();
    const address = await bound(m, 'aa:00:00:00:00:10');
    expect(address).toBe('10.99.1.100');
    expect(m.leases.get(address)).toMatchObject({ state: 'bound', mac: 'aa:00:00:00:00:10' });
    expect(m.events.map((e) => e.type)).toContain('lease.acked');

    const offer = replied(await m.ask(pkt(MessageType.DISCOVER, 'aa:00:00:00:00:11')));
    const s = silent(
      await m.ask(
        pkt(MessageType.REQUEST, 'aa:00:00:00:00:11', {}, [
          [Opt.ServerId, ip4(OTHER_SERVER)],
          [Opt.RequestedIp, ip4(offer.reply.yiaddr)],
        ]),
      ),
    );
    expect(s.count).toBe('ignored');
    expect(s.reason).toContain(OTHER_SERVER);
    expect(m.leases.get(offer.reply.yiaddr)?.state).toBe('expired');
  });

  it('INIT-REBOOT for an address off the network: NAK, broadcast (or to the relay, broadcast flag set)', async () => {
    const m = await machine();
    const o = replied(
      await m.ask(pkt(MessageType.REQUEST, 'aa:00:00:00:00:20', {}, [[Opt.RequestedIp, ip4('192.168.5.5')]])),
    );
    expect(typeOf(o)).toBe(MessageType.NAK);
    expect(o.count).toBe('naks');
    expect(o.delivery).toBe('broadcast');
    expect(o.reply.yiaddr).toBe('0.0.0.0');
    expect(o.reply.options.get(Opt.Message)?.toString()).toBe('192.168.5.5 is not on this network');
    expect(o.reply.options.has(Opt.LeaseTime)).toBe(false);
    expect(m.events.find((e) => e.type === 'lease.nak')?.data).toMatchObject({ mac: 'aa:00:00:00:00:20' });
    const relayed = replied(
      await m.ask(
        pkt(MessageType.REQUEST, 'aa:00:00:00:00:20', { giaddr: '10.99.1.254' }, [
          [Opt.RequestedIp, ip4('192.168.5.5')],
        ]),
      ),
    );
    expect(relayed.delivery).toBe('relay');
    expect(relayed.reply.flags & 0x8000).toBe(0x8000);
    // No record of the client at all: RFC 2131 4.3.2 MUST stay silent.
    const s = silent(
      await m.ask(pkt(MessageType.REQUEST, 'aa:00:00:00:00:21', {}, [[Opt.RequestedIp, ip4('10.99.1.120')]])),
    );
    expect(s.count).toBe('ignored');
  });

  it('RENEWING extends a bound lease (unicast to ciaddr); a lease that ended gets a NAK', async () => {
    const m = await machine();
    const address = await bound(m, 'aa:00:00:00:00:30');
    const before = m.leases.get(address)!.exp;
    m.advance(1000);
    const o = replied(await m.ask(pkt(MessageType.REQUEST, 'aa:00:00:00:00:30', { ciaddr: address })));
    expect(typeOf(o)).toBe(MessageType.ACK);
    expect(o.delivery).toBe('unicast-ciaddr');
    expect(o.reply.ciaddr).toBe(address);
    expect(m.leases.get(address)!.exp).toBe(before + 1000_000);
    m.advance(7200);
    const late = replied(await m.ask(pkt(MessageType.REQUEST, 'aa:00:00:00:00:30', { ciaddr: address })));
    expect(typeOf(late)).toBe(MessageType.NAK);
    expect(late.reply.options.get(Opt.Message)?.toString()).toBe(`no lease of ${address} to extend`);
  });

  it('DECLINE quarantines the address (only from its client, only naming this server)', async () => {
    const m = await machine();
    const address = await bound(m, 'aa:00:00:00:00:40');
    const notOurs = silent(
      await m.ask(
        pkt(MessageType.DECLINE, 'aa:00:00:00:00:40', {}, [
          [Opt.RequestedIp, ip4(address)],
          [Opt.ServerId, ip4(OTHER_SERVER)],
        ]),
      ),
    );
    expect(notOurs.count).toBe('ignored');
    expect(m.leases.get(address)?.state).toBe('bound');
    const s = silent(
      await m.ask(
        pkt(MessageType.DECLINE, 'aa:00:00:00:00:40', {}, [
          [Opt.RequestedIp, ip4(address)],
          [Opt.ServerId, ip4(SERVER)],
        ]),
      ),
    );
    expect(s.count).toBe('declines');
    expect(m.leases.get(address)?.state).toBe('declined');
    const next = replied(await m.ask(pkt(MessageType.DISCOVER, 'aa:00:00:00:00:40')));
    expect(next.reply.yiaddr).not.toBe(address);
  });

  it('RELEASE frees the lease only with option 54 naming this server', async () => {
    const m = await machine();
    const address = await bound(m, 'aa:00:00:00:00:50');
    const without = silent(await m.ask(pkt(MessageType.RELEASE, 'aa:00:00:00:00:50', { ciaddr: address })));
    expect(without.count).toBe('ignored');
    expect(m.leases.get(address)?.state).toBe('bound');
    const s = silent(
      await m.ask(pkt(MessageType.RELEASE, 'aa:00:00:00:00:50', { ciaddr: address }, [[Opt.ServerId, ip4(SERVER)]])),
    );
    expect(s.count).toBe('releases');
    expect(m.leases.get(address)?.state).toBe('released');
  });

  it('INFORM: an ACK without yiaddr or lease times, to ciaddr, or to the source without one', async () => {
    const m = await machine();
    const o = replied(
      await m.ask(
        pkt(MessageType.INFORM, 'aa:00:00:00:00:60', { ciaddr: '10.99.1.30' }, [
          [Opt.LeaseTime, Buffer.from([0, 0, 1, 0])],
        ]),
      ),
    );
    expect(typeOf(o)).toBe(MessageType.ACK);
    expect(o.count).toBe('informs');
    expect(o.delivery).toBe('unicast-ciaddr');
    expect(o.reply.yiaddr).toBe('0.0.0.0');
    for (const c of [Opt.LeaseTime, Opt.RenewalTime, Opt.RebindingTime]) expect(o.reply.options.has(c)).toBe(false);
    expect([...o.reply.options.get(3)!]).toEqual([10, 99, 1, 1]);
    expect(m.leases.size()).toBe(0);
    const src = replied(await m.ask(pkt(MessageType.INFORM, 'aa:00:00:00:00:60')));
    expect(src.delivery).toBe('unicast-source');
  });

  it('an unmanaged subnet gives addresses and never asks for a boot', async () => {
    const decide = vi.fn<Decide>(() => undefined);
    const m = await machine({ decide });
    const pxe = pkt(MessageType.DISCOVER, 'aa:00:00:00:00:70', {}, [
      [Opt.VendorClass, Buffer.from('PXEClient:Arch:00007:UNDI:003016')],
      [Opt.ClientArch, Buffer.from([0, 7])],
    ]);
    const o = replied(await m.ask(pxe, subnet({ unmanaged: true })));
    expect(o.reply.yiaddr).toBe('10.99.1.100');
    expect(o.boot).toBeUndefined();
    expect(o.reply.options.has(Opt.BootfileName)).toBe(false);
    expect(o.reply.file).toBe('');
    expect(decide).not.toHaveBeenCalled();
    // The same client in a managed subnet: the state machine asks.
    await m.ask(pkt(MessageType.DISCOVER, 'aa:00:00:00:00:71', {}, [[Opt.ClientArch, Buffer.from([0, 7])]]));
    expect(decide).toHaveBeenCalledTimes(1);
  });

  it("a PXE client: the boot decision goes in the reply and the onBoot offer carries the quirk's blksize", async () => {
    const quirks: Quirk[] = [{ match: { vendorClass: 'PXEClient:Arch:00007' }, blksize: 1024, why: 'test firmware' }];
    const known: CachedMachine = { uuid: '11111111-1111-4111-8111-111111111111', name: 'node1', bootEnv: 'ubuntu' };
    const m = await machine({ quirks, machines: new Map([['aa:00:00:00:00:80', known]]) });
    const pxe = (type: number, extra: Partial<DhcpPacket> = {}, more: [number, Buffer][] = []) =>
      pkt(type, 'aa:00:00:00:00:80', extra, [
        [Opt.VendorClass, Buffer.from('PXEClient:Arch:00007:UNDI:003016')],
        [Opt.ClientArch, Buffer.from([0, 7])],
        ...more,
      ]);
    const o = replied(await m.ask(pxe(MessageType.DISCOVER)));
    expect(o.reply.file).toBe('ipxe.efi');
    expect(o.reply.siaddr).toBe(SERVER);
    expect(o.reply.options.get(Opt.BootfileName)?.toString()).toBe('ipxe.efi');
    expect(o.boot?.offer).toEqual({
      mac: 'aa:00:00:00:00:80',
      address: '10.99.1.100',
      mode: 'server',
      arch: 7,
      vendorClass: 'PXEClient:Arch:00007:UNDI:003016',
      bootEnv: 'ubuntu',
      filename: 'ipxe.efi',
      reason: o.boot!.choice.decision.reason,
      blksize: { value: 1024, why: 'test firmware' },
    } satisfies BootOffer);
    expect(o.boot!.choice.decision.reason).toContain('blksize capped at 1024');

    // The ACK hands the bound address on.
    const ack = replied(
      await m.ask(
        pxe(MessageType.REQUEST, {}, [
          [Opt.ServerId, ip4(SERVER)],
          [Opt.RequestedIp, ip4('10.99.1.100')],
        ]),
      ),
    );
    expect(ack.boot?.offer).toMatchObject({ address: '10.99.1.100', mode: 'server', blksize: { value: 1024 } });

    // proxyDHCP's boot server (4011): the client's ciaddr is its address, the quirk's cap travels too.
    const proxied = replied(
      await answerBootServer(
        {
          pkt: pxe(MessageType.REQUEST, { ciaddr: '192.168.7.20' }),
          mac: 'aa:00:00:00:00:80',
          type: MessageType.REQUEST,
          subnet: subnet({ proxy: true }),
          server: SERVER,
          ingress: 'eth0/0.0.0.0',
          source: '192.168.7.20',
        },
        { machines: m.env.machines, decide: m.env.decide },
      ),
    );
    expect(proxied.delivery).toBe('back-to-sender');
    expect(proxied.proxyAcked).toEqual({ address: '192.168.7.20', subnet: 'lab' });
    expect(proxied.boot?.offer).toMatchObject({
      address: '192.168.7.20',
      mode: 'proxy',
      blksize: { value: 1024, why: 'test firmware' },
    });

    // The reply step: the dhcp.boot event, then onBoot; a throwing onBoot is logged, never thrown.
    const seen: BootOffer[] = [];
    announceBoot({ bus: m.env.bus, log: silentLogger, onBoot: (b) => seen.push(b) }, o.boot!.choice, o.boot!.offer);
    expect(seen).toEqual([o.boot!.offer]);
    expect(m.events.at(-1)).toMatchObject({ type: 'dhcp.boot', key: 'aa:00:00:00:00:80', machine: known.uuid });
    const error = vi.fn();
    const log = { ...silentLogger, info: () => {}, error } as unknown as typeof silentLogger;
    const boom = () => {
      throw new Error('session store down');
    };
    expect(() => announceBoot({ bus: m.env.bus, log, onBoot: boom }, o.boot!.choice, o.boot!.offer)).not.toThrow();
    expect(error).toHaveBeenCalledTimes(1);
  });

  // The server asks for the ACK finished for the wire (DhcpRequest.wire) so that it is encoded while its lease
  // commits: the bytes must be the ones the server would otherwise have made after the commit.
  it('an ACK asked for with `wire` comes back encoded as finishReply makes it (61 and 82 echoed, RFC 5107 override)', async () => {
    const m = await machine();
    const mac = 'aa:00:00:00:00:60';
    const cid = Buffer.from([1, 0xaa, 0, 0, 0, 0, 0x60]);
    const relay = { giaddr: '10.99.1.254' };
    const o82 = Buffer.from([1, 3, 0x65, 0x74, 0x68]);
    const offer = replied(await m.ask(pkt(MessageType.DISCOVER, mac, relay, [[Opt.ClientId, cid]])));
    const req = pkt(MessageType.REQUEST, mac, relay, [
      [Opt.ServerId, ip4(SERVER)],
      [Opt.RequestedIp, ip4(offer.reply.yiaddr)],
      [Opt.ClientId, cid],
      [Opt.RelayAgentInfo, o82],
    ]);
    const base = {
      pkt: req,
      mac,
      type: MessageType.REQUEST,
      subnet: m.lab,
      server: SERVER,
      ingress: 'eth0/x',
      source: '',
    };
    const wire = { echoClientId: true, serverIdOverride: '10.99.1.254' };
    const ack = replied(await answerRequest({ ...base, wire }, m.env));
    expect(typeOf(ack)).toBe(MessageType.ACK);
    expect(ack.wire).toBeDefined();
    expect(ack.wire!.buf.equals(finishReply(ack.reply, req, true, wire.serverIdOverride).buf)).toBe(true);
    const sent = decode(ack.wire!.buf);
    if (!sent.ok) throw new Error(sent.message);
    expect(sent.packet.yiaddr).toBe(offer.reply.yiaddr);
    expect([...sent.packet.options.get(Opt.ClientId)!]).toEqual([...cid]);
    expect([...sent.packet.options.get(Opt.RelayAgentInfo)!]).toEqual([...o82]);
    expect([...sent.packet.options.get(Opt.ServerId)!]).toEqual([10, 99, 1, 254]);
    // Without it the reply is left for the server to finish.
    const renew = replied(
      await answerRequest(
        {
          ...base,
          pkt: pkt(MessageType.REQUEST, mac, { ...relay, ciaddr: offer.reply.yiaddr }, [[Opt.ClientId, cid]]),
        },
        m.env,
      ),
    );
    expect(typeOf(renew)).toBe(MessageType.ACK);
    expect(renew.wire).toBeUndefined();
  });
});
