/**
 * Issue 11: the DHCP server under hostile conditions. Descriptor exhaustion (EMFILE from the interface listing)
 * used to reject the 30 s rescan's promise unhandled, and Node exited (defect 3); spoofed replies with a new
 * server id each grew the rogue map and wrote a line each (defect 6).
 */
import dgram from 'node:dgram';
import type os from 'node:os';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadNetAddon } from '../../src/dhcp/bind.js';
import { backgroundGuard, rogueWatch } from '../../src/dhcp/guard.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { emptyPacket, encode } from '../../src/dhcp/packet.js';
import { startRaResponder } from '../../src/dhcp/ra.js';
import type { InventoryCache } from '../../src/inventory/cache.js';
import { ensureAddon } from './addon.js';
import { ip4, listener, msgType, request, SUBNET, type TestEnv, testEnv } from './helpers.js';

ensureAddon();

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

/** A logger whose lines the test reads. */
function capture() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines, with: (text: string) => lines.filter((l) => l.msg.includes(text)) };
}
const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return cond();
};

const loopback = {
  ...SUBNET,
  name: 'lo',
  subnet: '127.0.0.0/8',
  activeStart: '127.0.0.100',
  activeEnd: '127.0.0.199',
  options: [],
};
const LO = {
  lo: [
    {
      address: '127.0.0.1',
      netmask: '255.0.0.0',
      family: 'IPv4',
      mac: '00:00:00:00:00:00',
      internal: true,
      cidr: '127.0.0.1/8',
    },
  ],
} as ReturnType<typeof os.networkInterfaces>;
/** What Node throws when uv_interface_addresses cannot open its netlink socket. */
const emfile = () =>
  Object.assign(
    new Error('A system error occurred: uv_interface_addresses returned Unknown system error 24 (EMFILE)'),
    { code: 'ERR_SYSTEM_ERROR', info: { errno: 24, code: 'EMFILE', syscall: 'uv_interface_addresses' } },
  );

async function offered(e: TestEnv, mac: string) {
  const d = request(MessageType.DISCOVER, mac, { flags: 0x8000 });
  await e.client.send(d, e.p.port);
  return msgType(await e.client.wait(d.xid, 1000)) === MessageType.OFFER;
}

describe('one wildcard socket under descriptor exhaustion', () => {
  it('the address listing failing with EMFILE keeps the previous addresses, answers on, and recovers', async () => {
    let failing = false;
    let calls = 0;
    const c = capture();
    env = await testEnv(undefined, {
      networkInterfaces: () => {
        calls++;
        if (failing) throw emfile();
        return LO;
      },
      rescanIntervalMs: 20, // also the address cache's lifetime (at most 5 s)
      log: c.log,
    });
    expect(await offered(env, '52:54:00:00:09:01')).toBe(true);
    failing = true;
    const before = calls;
    for (let i = 2; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 30));
      expect(await offered(env, `52:54:00:00:09:0${i}`)).toBe(true);
    }
    expect(calls).toBeGreaterThanOrEqual(before + 3);
    expect(env.server.stats.backgroundErrors).toBeGreaterThanOrEqual(3);
    expect(env.server.stats.errors).toBe(0);
    expect(c.with('listing interface addresses failed').length).toBe(1);
    failing = false;
    await new Promise((r) => setTimeout(r, 30));
    expect(await offered(env, '52:54:00:00:09:09')).toBe(true);
    expect(c.with('listing interface addresses works again').length).toBe(1);
  });
});

// Auto interface mode (one socket per interface, rescanned) needs the native helper and root, as in
// interfaces.test.ts; the injected interface list names only lo, so no other interface is ever served.
describe.skipIf(!loadNetAddon() || process.getuid?.() !== 0)('auto interface mode under descriptor exhaustion', () => {
  it('a rescan that throws EMFILE is logged once, the previous interfaces keep answering, and the next rescans recover', async () => {
    const rejections: unknown[] = [];
    const onRejection = (r: unknown) => rejections.push(r);
    process.on('unhandledRejection', onRejection);
    try {
      let failing = false;
      let calls = 0;
      const networkInterfaces = () => {
        calls++;
        if (failing) throw emfile();
        return LO;
      };
      const c = capture();
      env = await testEnv(async (s) => void (await s.create('subnets', 'lo', loopback)), {
        wildcard: false,
        serverAddress: undefined,
        networkInterfaces,
        rescanIntervalMs: 50,
        log: c.log,
      });
      expect(await offered(env, '52:54:00:00:08:01')).toBe(true);

      failing = true;
      const before = calls;
      // Several rescans fail (each lists interfaces at least once).
      expect(await until(() => calls >= before + 5)).toBe(true);
      expect(env.server.stats.backgroundErrors).toBeGreaterThanOrEqual(3);
      // The socket on lo is still open and answering.
      expect(await offered(env, '52:54:00:00:08:02')).toBe(true);
      // One line per task and interval, not one per failure.
      expect(c.with('interface rescan failed').length).toBe(1);

      failing = false;
      expect(await until(() => c.with('interface rescan works again').length === 1)).toBe(true);
      const after = calls;
      expect(await until(() => calls >= after + 2)).toBe(true); // rescanning goes on
      expect(await offered(env, '52:54:00:00:08:03')).toBe(true);
      await new Promise((r) => setTimeout(r, 50));
      expect(rejections).toEqual([]);
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });

  it('an interface that comes up after the start is served within seconds, long before the next full rescan', async () => {
    let up = false;
    const c = capture();
    env = await testEnv(async (s) => void (await s.create('subnets', 'lo', loopback)), {
      wildcard: false,
      serverAddress: undefined,
      networkInterfaces: () => (up ? LO : {}),
      rescanIntervalMs: 600_000,
      log: c.log,
    });
    expect(await offered(env, '52:54:00:00:08:10')).toBe(false);
    up = true;
    // The name watch runs every 2 s; the full rescan would come after 10 minutes.
    expect(await until(() => c.with('dhcp: serving interface').length === 1, 6000)).toBe(true);
    expect(await offered(env, '52:54:00:00:08:11')).toBe(true);
  });

  it('an interface whose 4011 socket cannot be opened is retried whole at the next rescan', async () => {
    let ifs: ReturnType<typeof os.networkInterfaces> = {};
    env = await testEnv(async (s) => void (await s.create('subnets', 'lo', loopback)), {
      wildcard: false,
      serverAddress: undefined,
      networkInterfaces: () => ifs,
      rescanIntervalMs: 50,
    });
    // Port 4011 (here proxyPort) taken when lo appears: port 67 opens, 4011 fails.
    const blocker = dgram.createSocket('udp4');
    await new Promise<void>((r) => blocker.bind(env!.p.proxyPort, () => r()));
    ifs = LO;
    expect(await until(() => env!.server.stats.backgroundErrors > 0)).toBe(true);
    await new Promise<void>((r) => blocker.close(() => r()));
    // Both sockets open at a later rescan: a PXE REQUEST to 4011 is answered.
    const c4011 = await listener(env.p.clientPort + 12);
    try {
      const ask = request(MessageType.REQUEST, '52:54:00:00:0a:01', { ciaddr: '127.0.0.1' }, [
        [Opt.VendorClass, Buffer.from('PXEClient:Arch:00007:UNDI:003016')],
        [Opt.ClientArch, Buffer.from([0, 7])],
      ]);
      let ack: unknown;
      for (let i = 0; i < 20 && !ack; i++) {
        await c4011.send(ask, env.p.proxyPort);
        ack = await c4011.wait(ask.xid, 100);
      }
      expect(msgType(ack as never)).toBe(MessageType.ACK);
      expect(await offered(env, '52:54:00:00:0a:02')).toBe(true);
    } finally {
      await c4011.close();
    }
  });

  it('spoofed replies with 300 server ids: counted, at most 5 warnings and events, then one summary line', async () => {
    const c = capture();
    env = await testEnv(async (s) => void (await s.create('subnets', 'lo', loopback)), {
      wildcard: false,
      serverAddress: undefined,
      networkInterfaces: () => LO,
      log: c.log,
    });
    // From an address that is not this host's (127.0.0.3 is not in the injected list), to the rogue watch on
    // lo (127.0.0.2: not the test client's 127.0.0.1).
    const spoofer = dgram.createSocket('udp4');
    await new Promise<void>((r) => spoofer.bind(0, '127.0.0.3', () => r()));
    try {
      for (let i = 0; i < 300; i++) {
        const p = emptyPacket(2);
        p.xid = i;
        p.options.set(Opt.MessageType, Buffer.from([MessageType.OFFER]));
        p.options.set(Opt.ServerId, ip4(`10.66.${i >> 8}.${i & 0xff}`));
        await new Promise<void>((r) => spoofer.send(encode(p), env!.p.clientPort, '127.0.0.2', () => r()));
      }
    } finally {
      spoofer.close();
    }
    expect(await until(() => env!.server.stats.rogue === 300)).toBe(true);
    expect(c.with('another DHCP server').length).toBe(5);
    expect(env.events.filter((e) => e.type === 'dhcp.rogue').length).toBe(5);
    await env.close();
    env = undefined;
    expect(c.with('295 more rogue server ids in the last minute').length).toBe(1);
  });
});

describe('backgroundGuard and rogueWatch', () => {
  it('logs a failing task once per interval with the count, and its recovery once', async () => {
    const c = capture();
    const clock = { t: 0 };
    const g = backgroundGuard(c.log, { intervalMs: 60_000, now: () => clock.t });
    for (let i = 0; i < 100; i++) {
      expect(
        await g.run('reclaim', () => {
          throw emfile();
        }),
      ).toBe(false);
      clock.t += 1000; // one a second: 100 failures over 100 s
    }
    expect(g.failures()).toBe(100);
    expect(c.with('reclaim failed').length).toBe(1);
    expect(c.with('reclaim still failing').length).toBe(1);
    expect(c.with('reclaim still failing')[0]!.suppressed).toBe(59);
    expect(await g.run('reclaim', async () => undefined)).toBe(true);
    expect(await g.run('reclaim', async () => undefined)).toBe(true);
    expect(c.with('reclaim works again').length).toBe(1);
  });

  it('remembers at most 256 server ids and re-reports a known one only after 10 minutes', () => {
    const c = capture();
    const clock = { t: 0 };
    const w = rogueWatch(c.log, { now: () => clock.t });
    let reported = 0;
    for (let i = 0; i < 10_000; i++) if (w.seen(`10.1.${i >> 8}.${i & 0xff}`)) reported++;
    expect(w.size()).toBe(256);
    expect(reported).toBe(5);
    clock.t += 61_000;
    expect(w.seen('192.0.2.1')).toBe(true);
    expect(w.seen('192.0.2.1')).toBe(false);
    clock.t += 600_000;
    expect(w.seen('192.0.2.1')).toBe(true);
    w.close();
    expect(c.with('more rogue server ids').length).toBe(1);
  });
});

describe('router advertisement switch under descriptor exhaustion', () => {
  const fakeAddon = (fail: (n: number) => string | undefined) => {
    const calls = { start: 0, stop: 0 };
    const addon = {
      openUdp4: () => -1,
      openIcmp6: () => -1,
      setArp: () => 0,
      closeFd: () => 0,
      raStart: () => {
        calls.start++;
        const code = fail(calls.start);
        if (code) throw Object.assign(new Error(`socket: ${code}`), { code });
        return calls.start;
      },
      raStop: () => {
        calls.stop++;
        return 0;
      },
      raAnswered: () => 7,
    };
    return { addon, calls };
  };
  const inventory = { prefs: () => ({ answerRouterSolicitations: true }) } as unknown as InventoryCache;

  it('EMFILE (E24 from the helper) is retried at the next check, all interfaces together; EPERM is not', async () => {
    const c = capture();
    const g = backgroundGuard(c.log);
    // The second interface's start fails twice with EMFILE, then works.
    const t = fakeAddon((n) => (n === 2 || n === 4 ? 'E24' : undefined));
    const ra = startRaResponder({
      interfaces: () => ['a', 'b'],
      inventory,
      log: c.log,
      addon: t.addon,
      checkEveryMs: 10,
      guard: g,
    });
    try {
      expect(await until(() => ra.answered() === 14)).toBe(true); // both running: 7 each
      expect(t.calls.start).toBe(6);
      expect(t.calls.stop).toBe(2); // 'a' stopped after each failure of 'b'
      expect(c.with('router advertisement sync failed').length).toBe(1);
    } finally {
      ra.close();
    }
    const p = fakeAddon(() => 'EPERM');
    const ra2 = startRaResponder({
      interfaces: () => ['a'],
      inventory,
      log: c.log,
      addon: p.addon,
      checkEveryMs: 10,
      guard: g,
    });
    await new Promise((r) => setTimeout(r, 100));
    ra2.close();
    expect(p.calls.start).toBe(1); // not retried: no privileges will not pass
  });
});
