/**
 * Subnets without a dynamic range (no activeStart/activeEnd) and onlyReservations subnets (issue 13): reserved
 * clients get their address, anyone else silence with the reason logged; without a range, DHCPINFORM from
 * statically configured hosts is answered (RFC 2131 3.4: options only, no lease, no yiaddr), with
 * onlyReservations (a wire shared with another server) it is not. Socket-free through
 * answerRequest, then through the real server on loopback.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { Reservation } from '../../src/model/subnet.js';
import { ip4, msgType, request, SUBNET, type TestEnv, testEnv } from './helpers.js';
import { machine, pkt, replied, SERVER, silent, subnet, typeOf } from './machine-harness.js';

const RESERVED = 'aa:00:00:00:02:01';
const STRANGER = 'aa:00:00:00:02:02';
const res = Reservation.parse({ subnet: 'lab', mac: RESERVED, address: '10.99.1.50' });
const noRange = () => subnet({ activeStart: undefined, activeEnd: undefined });

function captured() {
  const lines: { msg: string; [k: string]: unknown }[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

describe('a subnet without a dynamic range (state machine)', () => {
  it('the served subnet has the empty range and the model accepts it', () => {
    const s = noRange();
    expect(s.activeStart).toBeUndefined();
    expect(s.end).toBeLessThan(s.start);
  });

  it('a reserved client: OFFER and ACK of its address, with the reserved lease time', async () => {
    const m = await machine({ reservations: [res] });
    const s = noRange();
    const offer = replied(await m.ask(pkt(MessageType.DISCOVER, RESERVED), s));
    expect(typeOf(offer)).toBe(MessageType.OFFER);
    expect(offer.reply.yiaddr).toBe('10.99.1.50');
    const ack = replied(
      await m.ask(
        pkt(MessageType.REQUEST, RESERVED, {}, [
          [Opt.ServerId, ip4(SERVER)],
          [Opt.RequestedIp, ip4('10.99.1.50')],
        ]),
        s,
      ),
    );
    expect(typeOf(ack)).toBe(MessageType.ACK);
    expect(ack.reply.options.get(Opt.LeaseTime)?.readUInt32BE(0)).toBe(7200);
    expect(m.leases.get('10.99.1.50')).toMatchObject({ state: 'bound', mac: RESERVED });
    // RENEWING it later: ACK.
    const renew = replied(await m.ask(pkt(MessageType.REQUEST, RESERVED, { ciaddr: '10.99.1.50' }), s));
    expect(typeOf(renew)).toBe(MessageType.ACK);
  });

  it('an unknown client: silence to DISCOVER, SELECTING and INIT-REBOOT (not a NAK), the reason logged', async () => {
    const { log, lines } = captured();
    const m = await machine({ reservations: [res], log });
    const s = noRange();
    const d = silent(await m.ask(pkt(MessageType.DISCOVER, STRANGER), s));
    expect(d.count).toBe('ignored');
    expect(d.reason).toBe('not reserved in a subnet without a dynamic range');
    const sel = pkt(MessageType.REQUEST, STRANGER, {}, [
      [Opt.ServerId, ip4(SERVER)],
      [Opt.RequestedIp, ip4('10.99.1.60')],
    ]);
    silent(await m.ask(sel, s));
    silent(await m.ask(pkt(MessageType.REQUEST, STRANGER, {}, [[Opt.RequestedIp, ip4('10.99.1.60')]]), s));
    expect(m.leases.size()).toBe(0);
    expect(m.events.some((e) => e.type === 'lease.nak')).toBe(false);
    const logged = lines.filter((l) => l.mac === STRANGER && l.msg.includes('without a dynamic range'));
    expect(logged.map((l) => l.type)).toEqual(['DISCOVER', 'REQUEST', 'REQUEST']);
  });

  it('INFORM from a statically configured host (no reservation): ACK with the options, no lease, no yiaddr (RFC 2131 3.4, 4.3.5)', async () => {
    const m = await machine();
    const o = replied(await m.ask(pkt(MessageType.INFORM, STRANGER, { ciaddr: '10.99.1.7' }), noRange()));
    expect(typeOf(o)).toBe(MessageType.ACK);
    expect(o.count).toBe('informs');
    expect(o.reply.yiaddr).toBe('0.0.0.0');
    expect(o.delivery).toBe('unicast-ciaddr');
    expect([...o.reply.options.get(3)!]).toEqual([10, 99, 1, 1]);
    for (const c of [Opt.LeaseTime, Opt.RenewalTime, Opt.RebindingTime]) expect(o.reply.options.has(c)).toBe(false);
    expect(m.leases.size()).toBe(0);
  });

  it('onlyReservations (a wire shared with another server): silence to unknown clients, INFORM included; reserved ones served', async () => {
    const m = await machine({ reservations: [res] });
    for (const s of [subnet({ onlyReservations: true }), noRange()]) {
      const only = { ...s, onlyReservations: true };
      expect(silent(await m.ask(pkt(MessageType.DISCOVER, STRANGER), only)).reason).toBe(
        'not reserved in an onlyReservations subnet',
      );
      silent(await m.ask(pkt(MessageType.INFORM, STRANGER, { ciaddr: '10.99.1.7' }), only));
      expect(replied(await m.ask(pkt(MessageType.DISCOVER, RESERVED), only)).reply.yiaddr).toBe('10.99.1.50');
      const inform = replied(await m.ask(pkt(MessageType.INFORM, RESERVED, { ciaddr: '10.99.1.50' }), only));
      expect(typeOf(inform)).toBe(MessageType.ACK);
    }
  });
});

describe('a subnet without a dynamic range (real server, loopback)', () => {
  let env: TestEnv | undefined;
  afterEach(async () => {
    await env?.close();
    env = undefined;
  });

  it('served: the reservation gets its address, an unknown client nothing, an INFORM its ACK', async () => {
    const { activeStart: _s, activeEnd: _e, ...lab } = SUBNET;
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', lab);
      await s.create('reservations', '10.99.1.50', { address: '10.99.1.50', mac: '52:54:00:00:02:01', subnet: 'lab' });
    });
    // Served, not dropped as invalid.
    expect(env.server.inventory.subnetByName('lab')?.activeStart).toBeUndefined();
    const known = await env.dora('52:54:00:00:02:01');
    expect(msgType(known.ack)).toBe(MessageType.ACK);
    expect(known.ack!.yiaddr).toBe('10.99.1.50');
    const d = request(MessageType.DISCOVER, '52:54:00:00:02:02', { flags: 0x8000 });
    await env.client.send(d, env.p.port);
    expect(await env.client.wait(d.xid, 400)).toBeUndefined();
    const inf = request(MessageType.INFORM, '52:54:00:00:02:03', { ciaddr: '10.99.1.7' });
    await env.client.send(inf, env.p.port);
    const ack = await env.client.wait(inf.xid);
    expect(msgType(ack)).toBe(MessageType.ACK);
    expect(ack!.yiaddr).toBe('0.0.0.0');
    expect(ack!.options.has(Opt.LeaseTime)).toBe(false);
    expect(env.server.stats.informs).toBe(1);
  });
});
