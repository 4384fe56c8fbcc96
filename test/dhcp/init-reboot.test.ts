/**
 * Who gets a NAK and who gets silence (issue 13), socket-free through answerRequest, each decision with its RFC
 * 2131 section: INIT-REBOOT from a client with and without a record, SELECTING outside the pool, RELEASE
 * without option 54; and one INIT-REBOOT through the real server on loopback.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { Reservation } from '../../src/model/subnet.js';
import { ip4, msgType, request, type TestEnv, testEnv } from './helpers.js';
import { bound, machine, pkt, replied, SERVER, silent, typeOf } from './machine-harness.js';

/** A debug logger whose lines the test reads. */
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

const A = 'aa:00:00:00:01:0a';
const B = 'aa:00:00:00:01:0b';
const initReboot = (mac: string, address: string, extra = {}) =>
  pkt(MessageType.REQUEST, mac, extra, [[Opt.RequestedIp, ip4(address)]]);
const reason = (o: { reply?: unknown; reason?: string }) => (o as { reason: string }).reason;

describe('INIT-REBOOT (RFC 2131 4.3.2)', () => {
  it("no record of the client, address leased to another: silence (MUST remain silent), logged, A's lease kept", async () => {
    const { log, lines } = captured();
    const m = await machine({ log });
    const a = await bound(m, A);
    const s = silent(await m.ask(initReboot(B, a)));
    expect(s.count).toBe('ignored');
    expect(s.reason).toBe(`no record of this client for ${a} (INIT-REBOOT)`);
    expect(lines.some((l) => l.msg.includes('silent (RFC 2131 4.3.2)') && l.mac === B)).toBe(true);
    expect(m.leases.get(a)).toMatchObject({ state: 'bound', mac: A });
    expect(m.events.some((e) => e.type === 'lease.nak')).toBe(false);
  });

  it('no record of the client, address on this network but outside the pool (or the server its own): silence', async () => {
    const m = await machine();
    // The pool is 10.99.1.100-199: .20 may be another server's, or statically configured.
    expect(reason(silent(await m.ask(initReboot(B, '10.99.1.20'))))).toContain('no record of this client');
    // Relayed: the same (the relay's network is this subnet).
    silent(await m.ask(initReboot(B, '10.99.1.20', { giaddr: '10.99.1.254' })));
    // Inside the pool, free: still no record of this client, still silent (no binding made).
    silent(await m.ask(initReboot(B, '10.99.1.150')));
    expect(m.leases.get('10.99.1.150')).toBeUndefined();
  });

  it('the wrong network: NAK whoever asks (SHOULD NAK; the mask applied to 50 does not match)', async () => {
    const m = await machine();
    const n = replied(await m.ask(initReboot(B, '192.168.7.7')));
    expect(typeOf(n)).toBe(MessageType.NAK);
    expect(n.delivery).toBe('broadcast');
  });

  it("a client with a binding asking for another client's address or one outside the pool: NAK", async () => {
    const m = await machine();
    const a = await bound(m, A);
    const b = await bound(m, B);
    const n = replied(await m.ask(initReboot(B, a)));
    expect(typeOf(n)).toBe(MessageType.NAK);
    expect(n.reply.options.get(Opt.Message)?.toString()).toBe(`${a} is not this client's address (it holds ${b})`);
    expect(typeOf(replied(await m.ask(initReboot(B, '10.99.1.20'))))).toBe(MessageType.NAK);
    // Its own address: ACK.
    const ack = replied(await m.ask(initReboot(B, b)));
    expect(typeOf(ack)).toBe(MessageType.ACK);
    expect(ack.reply.yiaddr).toBe(b);
    expect(m.leases.get(a)?.mac).toBe(A);
  });

  it('a lease that ended or was released is no record of the address the client holds now: silence', async () => {
    const m = await machine();
    const b = await bound(m, B);
    await m.ask(pkt(MessageType.RELEASE, B, { ciaddr: b }, [[Opt.ServerId, ip4(SERVER)]]));
    expect(m.leases.get(b)?.state).toBe('released');
    // It got 10.99.1.20 from another server meanwhile.
    silent(await m.ask(initReboot(B, '10.99.1.20')));
    // Its old address, still free: the lease there is its own, so it is ACKed again.
    expect(typeOf(replied(await m.ask(initReboot(B, b))))).toBe(MessageType.ACK);
  });

  it('a reservation is a record: its address ACKed, any other NAKed', async () => {
    const res = Reservation.parse({ subnet: 'lab', mac: B, address: '10.99.1.50' });
    const m = await machine({ reservations: [res] });
    expect(typeOf(replied(await m.ask(initReboot(B, '10.99.1.120'))))).toBe(MessageType.NAK);
    const ack = replied(await m.ask(initReboot(B, '10.99.1.50')));
    expect(typeOf(ack)).toBe(MessageType.ACK);
    expect(ack.reply.yiaddr).toBe('10.99.1.50');
  });
});

describe('SELECTING outside the pool (RFC 2131 3.1 step 4, 4.3.2)', () => {
  it('a client without a lease selecting this server for an address it cannot give: NAK (documented choice)', async () => {
    const m = await machine();
    const sel = pkt(MessageType.REQUEST, B, {}, [
      [Opt.ServerId, ip4(SERVER)],
      [Opt.RequestedIp, ip4('10.99.1.20')],
    ]);
    const n = replied(await m.ask(sel));
    expect(typeOf(n)).toBe(MessageType.NAK);
    expect(n.reply.options.get(Opt.Message)?.toString()).toBe('10.99.1.20 is not available');
    expect(m.leases.get('10.99.1.20')).toBeUndefined();
  });
});

describe('RELEASE (RFC 2131 4.4.6, table 5: 54 MUST be sent)', () => {
  it('without option 54: ignored and the lease stays bound; with 54 of another server: ignored too', async () => {
    const m = await machine();
    const a = await bound(m, A);
    const no54 = silent(await m.ask(pkt(MessageType.RELEASE, A, { ciaddr: a })));
    expect(no54.count).toBe('ignored');
    expect(no54.reason).toBe('RELEASE without 54 naming this server');
    const other = silent(await m.ask(pkt(MessageType.RELEASE, A, { ciaddr: a }, [[Opt.ServerId, ip4('10.99.1.3')]])));
    expect(other.count).toBe('ignored');
    expect(m.leases.get(a)?.state).toBe('bound');
  });
});

describe('INIT-REBOOT through the real server (loopback)', () => {
  let env: TestEnv | undefined;
  afterEach(async () => {
    await env?.close();
    env = undefined;
  });

  it("silence to a client it has no record of asking for another client's address; a NAK once it has one", async () => {
    env = await testEnv();
    const a = await env.dora('52:54:00:00:01:0a');
    expect(msgType(a.ack)).toBe(MessageType.ACK);
    const ask = () =>
      request(MessageType.REQUEST, '52:54:00:00:01:0b', { flags: 0x8000 }, [[Opt.RequestedIp, ip4(a.ack!.yiaddr)]]);
    const r = ask();
    await env.client.send(r, env.p.port);
    expect(await env.client.wait(r.xid, 400)).toBeUndefined();
    expect(env.server.stats.naks).toBe(0);
    expect(env.server.stats.ignored).toBeGreaterThanOrEqual(1);
    const b = await env.dora('52:54:00:00:01:0b');
    expect(msgType(b.ack)).toBe(MessageType.ACK);
    const r2 = ask();
    await env.client.send(r2, env.p.port);
    expect(msgType(await env.client.wait(r2.xid))).toBe(MessageType.NAK);
  });
});
