import { afterEach, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { ip4, msgType, request, SUBNET, type TestEnv, testEnv } from './helpers.js';

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

describe('DHCP server on loopback', () => {
  it('answers nothing while no subnet exists (safe by default)', async () => {
    env = await testEnv(async () => {});
    const d = request(MessageType.DISCOVER, '52:54:00:00:00:01', { flags: 0x8000 });
    await env.client.send(d, env.p.port);
    expect(await env.client.wait(d.xid, 300)).toBeUndefined();
    expect(env.server.stats.ignored).toBe(1);
  });

  it('DISCOVER/OFFER/REQUEST/ACK gives an address from the range with the subnet options, durable before the ACK', async () => {
    env = await testEnv();
    const { offer, ack } = await env.dora('52:54:00:00:00:01');
    expect(msgType(offer)).toBe(MessageType.OFFER);
    expect(offer!.yiaddr).toBe('10.99.1.100');
    expect(msgType(ack)).toBe(MessageType.ACK);
    expect(ack!.yiaddr).toBe('10.99.1.100');
    expect(ack!.options.get(Opt.ServerId)).toEqual(ip4('10.99.1.1'));
    expect(ack!.options.get(Opt.Router)).toEqual(ip4('10.99.1.1'));
    expect(ack!.options.get(Opt.SubnetMask)).toEqual(ip4('255.255.255.0'));
    expect(ack!.options.get(Opt.LeaseTime)!.readUInt32BE(0)).toBe(3600);
    // Not a PXE client: no boot file.
    expect(ack!.file).toBe('');
    const stored = await env.store.get('leases', '10.99.1.100');
    expect(stored?.doc).toMatchObject({ mac: '52:54:00:00:00:01', state: 'bound', subnet: 'lab' });
    expect(env.events.map((e) => e.type)).toEqual(expect.arrayContaining(['lease.offered', 'lease.acked']));
  });

  it('two clients never share an address; a returning client gets its own again', async () => {
    env = await testEnv();
    const a = await env.dora('52:54:00:00:00:0a');
    const b = await env.dora('52:54:00:00:00:0b');
    expect(a.ack!.yiaddr).not.toBe(b.ack!.yiaddr);
    const a2 = await env.dora('52:54:00:00:00:0a');
    expect(a2.ack!.yiaddr).toBe(a.ack!.yiaddr);
  });

  it('a reservation gives the reserved address; onlyReservations ignores unknown MACs completely', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', { ...SUBNET, onlyReservations: true });
      await s.create('reservations', '10.99.1.50', {
        address: '10.99.1.50',
        mac: '52:54:00:00:00:50',
        subnet: 'lab',
        options: [],
        description: '',
      });
    });
    const known = await env.dora('52:54:00:00:00:50');
    expect(known.ack!.yiaddr).toBe('10.99.1.50');
    expect(known.ack!.options.get(Opt.LeaseTime)!.readUInt32BE(0)).toBe(7200);
    const d = request(MessageType.DISCOVER, '52:54:00:00:00:51', { flags: 0x8000 });
    await env.client.send(d, env.p.port);
    expect(await env.client.wait(d.xid, 300)).toBeUndefined();
    // Not even a NAK to an INIT-REBOOT request.
    const r = request(MessageType.REQUEST, '52:54:00:00:00:51', { flags: 0x8000 }, [
      [Opt.RequestedIp, ip4('10.99.1.120')],
    ]);
    await env.client.send(r, env.p.port);
    expect(await env.client.wait(r.xid, 300)).toBeUndefined();
  });

  it("NAKs an INIT-REBOOT for an address on another network or, from a client it knows, someone else's", async () => {
    env = await testEnv();
    const a = await env.dora('52:54:00:00:00:0a');
    // RFC 2131 4.3.2: a client it has no record of would get silence (test/dhcp/init-reboot.test.ts).
    await env.dora('52:54:00:00:00:0b');
    const r = request(MessageType.REQUEST, '52:54:00:00:00:0b', { flags: 0x8000 }, [
      [Opt.RequestedIp, ip4(a.ack!.yiaddr)],
    ]);
    await env.client.send(r, env.p.port);
    expect(msgType(await env.client.wait(r.xid))).toBe(MessageType.NAK);
    const r2 = request(MessageType.REQUEST, '52:54:00:00:00:0b', { flags: 0x8000 }, [
      [Opt.RequestedIp, ip4('192.168.7.7')],
    ]);
    await env.client.send(r2, env.p.port);
    expect(msgType(await env.client.wait(r2.xid))).toBe(MessageType.NAK);
  });

  it('renews (ciaddr, unicast reply), releases, and quarantines a declined address', async () => {
    env = await testEnv();
    const mac = '52:54:00:00:00:0c';
    const { ack } = await env.dora(mac);
    const addr = ack!.yiaddr;
    const renew = request(MessageType.REQUEST, mac, { ciaddr: addr });
    await env.client.send(renew, env.p.port);
    const r = await env.client.wait(renew.xid);
    expect(msgType(r)).toBe(MessageType.ACK);
    expect(r!.ciaddr).toBe(addr);
    await env.client.send(
      request(MessageType.RELEASE, mac, { ciaddr: addr }, [[Opt.ServerId, ip4('10.99.1.1')]]),
      env.p.port,
    );
    await new Promise((res) => setTimeout(res, 100));
    expect((await env.store.get('leases', addr))?.doc).toMatchObject({ state: 'released' });
    // DECLINE (with 50 and 54, both MUST, RFC 2131 table 5): the next client does not get that address.
    const again = await env.dora(mac);
    await env.client.send(
      request(MessageType.DECLINE, mac, {}, [
        [Opt.RequestedIp, ip4(again.ack!.yiaddr)],
        [Opt.ServerId, ip4('10.99.1.1')],
      ]),
      env.p.port,
    );
    await new Promise((res) => setTimeout(res, 100));
    expect((await env.store.get('leases', again.ack!.yiaddr))?.doc).toMatchObject({ state: 'declined' });
    const other = await env.dora('52:54:00:00:00:0d');
    expect(other.ack!.yiaddr).not.toBe(again.ack!.yiaddr);
  });

  it('answers INFORM with options and no lease', async () => {
    env = await testEnv();
    const inf = request(MessageType.INFORM, '52:54:00:00:00:0e', { ciaddr: '127.0.0.1' });
    await env.client.send(inf, env.p.port);
    const r = await env.client.wait(inf.xid);
    expect(msgType(r)).toBe(MessageType.ACK);
    expect(r!.yiaddr).toBe('0.0.0.0');
    expect(r!.options.has(Opt.LeaseTime)).toBe(false);
    expect(r!.options.get(Opt.Router)).toEqual(ip4('10.99.1.1'));
  });

  it('renders option templates against the machine record', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', {
        ...SUBNET,
        options: [
          { code: 12, value: 'n-{{machine.name}}' },
          { code: 15, value: 'lab.example' },
        ],
      });
      await s.create('machines', 'u-1', { uuid: 'u-1', name: 'web1', macs: ['52:54:00:00:00:77'] }, [
        { field: 'macs', value: '52:54:00:00:00:77' },
      ]);
    });
    const { ack } = await env.dora('52:54:00:00:00:77');
    expect(ack!.options.get(Opt.Hostname)?.toString()).toBe('n-web1');
    expect(ack!.options.get(Opt.DomainName)?.toString()).toBe('lab.example');
  });

  it('finds a machine created or given a new MAC after the server started (in-memory MAC index follows the bus)', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', { ...SUBNET, options: [{ code: 12, value: 'n-{{machine.name}}' }] });
    });
    const before = await env.dora('52:54:00:00:00:78');
    expect(before.ack!.options.get(Opt.Hostname)?.toString()).not.toBe('n-web2');
    await env.store.create('machines', 'u-2', { uuid: 'u-2', name: 'web2', macs: ['52:54:00:00:00:78'] }, [
      { field: 'macs', value: '52:54:00:00:00:78' },
    ]);
    env.bus.emit({ type: 'machines.created', key: 'u-2' });
    const after = await env.dora('52:54:00:00:00:78');
    expect(after.ack!.options.get(Opt.Hostname)?.toString()).toBe('n-web2');
    await env.store.replace('machines', 'u-2', { uuid: 'u-2', name: 'web2', macs: ['52:54:00:00:00:79'] }, [
      { field: 'macs', value: '52:54:00:00:00:79' },
    ]);
    env.bus.emit({ type: 'machines.updated', key: 'u-2' });
    const moved = await env.dora('52:54:00:00:00:79');
    expect(moved.ack!.options.get(Opt.Hostname)?.toString()).toBe('n-web2');
  });
});

describe('under concurrent load', () => {
  it('500 clients, 50 at a time: every ACKed address is distinct', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'big', {
        ...SUBNET,
        name: 'big',
        subnet: '10.99.0.0/16',
        activeStart: '10.99.8.0',
        activeEnd: '10.99.15.255',
      });
    });
    const e = env;
    const seen = new Map<string, string>();
    let next = 0;
    const worker = async () => {
      while (next < 500) {
        const i = next++;
        const mac = `52:54:02:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
        const { ack } = await e.dora(mac);
        expect(msgType(ack)).toBe(MessageType.ACK);
        expect(seen.get(ack!.yiaddr), ack!.yiaddr).toBeUndefined();
        seen.set(ack!.yiaddr, mac);
      }
    };
    await Promise.all(Array.from({ length: 50 }, worker));
    expect(seen.size).toBe(500);
  }, 60_000);
});
