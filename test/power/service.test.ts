import { afterEach, describe, expect, it } from 'vitest';
import { createBus, type PlinthEvent } from '../../src/events.js';
import { bootRecorder } from '../../src/inventory/boots.js';
import { silentLogger } from '../../src/log.js';
import type { BmcSettings, BootOverride, PowerAction, PowerDriver } from '../../src/power/driver.js';
import { PowerError } from '../../src/power/driver.js';
import { lastBootUefi, powerService } from '../../src/power/service.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

type Call = { bmc: string; op: string; start: number; end?: number };

/** A fake BMC per address: each call takes `delay` ms (or hangs), and is logged with its start and end. */
function fakeDrivers(delays: Record<string, number | 'hang'>) {
  const calls: Call[] = [];
  let clock = 0;
  const seenPasswords: (string | undefined)[] = [];
  const factory = (bmc: BmcSettings): PowerDriver => {
    seenPasswords.push(bmc.password);
    const act = async (op: string, signal: AbortSignal) => {
      const c: Call = { bmc: bmc.address, op, start: clock++ };
      calls.push(c);
      const d = delays[bmc.address] ?? 5;
      await new Promise<void>((res, rej) => {
        if (d === 'hang') {
          signal.addEventListener('abort', () => rej(new PowerError('timeout', 'aborted')));
          return;
        }
        setTimeout(res, d);
      });
      c.end = clock++;
    };
    return {
      status: async (s) => {
        await act('status', s);
        return 'on';
      },
      power: (a: PowerAction, s) => act(a, s),
      setBootDevice: (o: BootOverride, s) => act(`bootdev:${o.device}`, s),
    };
  };
  return { calls, factory, seenPasswords };
}

let store: Store;
afterEach(async () => store?.close());

async function setup(
  delays: Record<string, number | 'hang'>,
  opts: { maxConcurrent?: number; timeoutMs?: number } = {},
) {
  store = openSqliteStore(':memory:');
  const bus = createBus(silentLogger);
  const events: PlinthEvent[] = [];
  bus.on((e) => events.push(e));
  const addrs = Object.keys(delays);
  for (const [i, a] of addrs.entries()) {
    await store.create('machines', `m${i}`, {
      uuid: `m${i}`,
      name: `node${i}`,
      macs: [],
      profiles: [],
      params: {},
      bmc: { driver: 'redfish', address: a, username: 'root', password: 'hunter2-secret' },
    });
  }
  const d = fakeDrivers(delays);
  const boots = bootRecorder(store);
  const svc = powerService({ store, bus, log: silentLogger, boots, drivers: d.factory, ...opts });
  return { svc, events, boots, ...d };
}

describe('power service', () => {
  it('runs one operation at a time per BMC, in the order asked (boot device before power)', async () => {
    const { svc, calls } = await setup({ 'bmc-a': 20 });
    await Promise.all([
      svc.setBootDevice('m0', { device: 'pxe', persistent: false, uefi: false }),
      svc.power('m0', 'cycle'),
      svc.status('m0'),
    ]);
    expect(calls.map((c) => c.op)).toEqual(['bootdev:pxe', 'cycle', 'status']);
    // Serialised: each call started after the previous one ended.
    for (let i = 1; i < calls.length; i++) expect(calls[i]!.start).toBeGreaterThan(calls[i - 1]!.end!);
  });

  it('caps calls in flight across BMCs, and a hanging BMC costs its timeout while others go on', async () => {
    const delays: Record<string, number | 'hang'> = { hung: 'hang' };
    for (let i = 1; i < 6; i++) delays[`b${i}`] = 30;
    const { svc, calls, events } = await setup(delays, { maxConcurrent: 2, timeoutMs: 400 });
    let maxOpen = 0;
    const tick = setInterval(() => {
      maxOpen = Math.max(maxOpen, calls.filter((c) => c.end === undefined && c.bmc !== 'hung').length);
    }, 1);
    const hung = svc.power('m0', 'on').catch((e) => e);
    const others = await Promise.all([1, 2, 3, 4, 5].map((i) => svc.power(`m${i}`, 'cycle').then(() => Date.now())));
    clearInterval(tick);
    const err = await hung;
    expect(err).toBeInstanceOf(PowerError);
    expect((err as PowerError).code).toBe('timeout');
    // With the hung call holding one of two slots, the five others ran one at a time: never two besides it.
    expect(maxOpen).toBeLessThanOrEqual(1);
    expect(others).toHaveLength(5);
    expect(svc.inFlight).toBe(0);
    const failed = events.find((e) => e.type === 'power.failed');
    expect(failed?.data).toMatchObject({ action: 'on', code: 'timeout' });
    expect(events.filter((e) => e.type === 'power.done')).toHaveLength(5);
  });

  it('records each call in the timeline and on the bus, with no password anywhere but the driver', async () => {
    const { svc, events, boots, seenPasswords } = await setup({ 'bmc-a': 1 });
    await svc.power('m0', 'off');
    const tl = await boots.list('m0');
    expect(tl[0]!.events.map((e) => e.detail)).toEqual([expect.stringMatching(/^off \(\d+ ms\)$/)]);
    expect(seenPasswords).toEqual(['hunter2-secret']);
    expect(JSON.stringify(events)).not.toContain('hunter2');
    expect(JSON.stringify(tl)).not.toContain('hunter2');
  });

  it('refuses a machine without bmc settings with a clear reason', async () => {
    const { svc } = await setup({ 'bmc-a': 1 });
    await store.create('machines', 'bare', { uuid: 'bare', name: 'bare', macs: [], profiles: [], params: {} });
    await expect(svc.power('bare', 'on')).rejects.toThrow(/no bmc settings/);
  });

  it('takes UEFI from the last DHCP client architecture (option 93)', () => {
    const boot = (arch: number) => ({ events: [{ at: 'x', kind: 'dhcp', detail: '', data: { arch } }] }) as never;
    expect(lastBootUefi({ arch: 'amd64' }, [boot(7)])).toBe(true);
    expect(lastBootUefi({ arch: 'amd64' }, [boot(0)])).toBe(false);
    expect(lastBootUefi({ arch: 'arm64' }, [])).toBe(true);
    expect(lastBootUefi({ arch: 'amd64' }, [])).toBe(false);
  });
});
