/**
 * The power service: every BMC call Plinth makes goes through here. It decides what the drivers do not: one
 * operation at a time per BMC (a BMC serves one session badly and two concurrent boot-flag writes race), a global
 * cap on calls in flight (a rack power-cycled at once must not open a hundred sessions), a timeout per call (a BMC
 * that hangs costs its timeout and only its own queue waits), and a record of each call in the machine's boot
 * timeline and on the bus. The password in a machine's `bmc` reaches only the driver factory: it is never in a
 * log line, an event or a timeline entry.
 */
import type { Bus } from '../events.js';
import type { Boot, BootEventKind, BootRecorder } from '../inventory/boots.js';
import type { Logger } from '../log.js';
import type { Machine } from '../model/machine.js';
import type { Store } from '../store/store.js';
import {
  type BmcSettings,
  type BootOverride,
  type DriverFactory,
  type PowerAction,
  type PowerDriver,
  PowerError,
  type PowerState,
} from './driver.js';

export type PowerServiceOptions = {
  store: Store;
  bus: Bus;
  log: Logger;
  boots: BootRecorder;
  drivers: DriverFactory;
  /** BMC calls in flight at once, all BMCs together (default 16). */
  maxConcurrent?: number;
  /** Each call's limit (default 30 s; ipmitool's own retries take up to ~20 s on a lossy network). */
  timeoutMs?: number;
};

export type PowerService = ReturnType<typeof powerService>;

// The timeline's kinds are src/inventory/boots.ts's; 'power' is added there at merge (see the report).
const POWER_KIND: BootEventKind = 'power';

/** A counting semaphore: FIFO, so no caller starves. */
function semaphore(max: number) {
  let used = 0;
  const waiting: (() => void)[] = [];
  return {
    async acquire(): Promise<() => void> {
      if (used < max) used++;
      else await new Promise<void>((r) => waiting.push(r));
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const next = waiting.shift();
        if (next) next();
        else used--;
      };
    },
    get inFlight() {
      return used;
    },
  };
}

/** The BMC a machine's calls queue on: two machine records naming one BMC share its queue. */
export const bmcKey = (b: BmcSettings) => `${b.driver}|${b.address.toLowerCase()}|${b.port ?? ''}`;

export function powerService(opts: PowerServiceOptions) {
  const { store, bus, log, boots } = opts;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const slots = semaphore(opts.maxConcurrent ?? 16);
  const tails = new Map<string, Promise<unknown>>();

  const machineOf = async (uuid: string): Promise<Machine> => {
    const m = (await store.get('machines', uuid))?.doc as Machine | undefined;
    if (!m) throw new PowerError('failed', `machine '${uuid}' does not exist`);
    return m;
  };

  /** Runs `fn` when this BMC's earlier calls are done and a global slot is free, within the timeout. */
  async function call<T>(uuid: string, action: string, fn: (d: PowerDriver, s: AbortSignal) => Promise<T>): Promise<T> {
    const m = await machineOf(uuid);
    if (!m.bmc) throw new PowerError('unsupported', `machine '${m.name}' has no bmc settings: set its "bmc" first`);
    const bmc = m.bmc as BmcSettings;
    const key = bmcKey(bmc);
    const before = tails.get(key) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((r) => {
      done = r;
    });
    const tail = before.then(() => mine);
    tails.set(key, tail);
    await before;
    const release = await slots.acquire();
    const started = Date.now();
    const ctl = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const driver = opts.drivers(bmc);
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          // Rejected before the abort: a driver that rejects on abort (with its own words) must not win the race.
          reject(
            new PowerError('timeout', `the BMC at ${bmc.address} did not answer ${action} within ${timeoutMs} ms`),
          );
          ctl.abort();
        }, timeoutMs);
      });
      const result = await Promise.race([fn(driver, ctl.signal), timeout]);
      const ms = Date.now() - started;
      const state = typeof result === 'string' ? result : undefined;
      bus.emit({ type: 'power.done', machine: uuid, key: uuid, data: { action, ms, ...(state ? { state } : {}) } });
      await boots.record(uuid, { kind: POWER_KIND, detail: `${action}${state ? `: ${state}` : ''} (${ms} ms)` });
      return result;
    } catch (err) {
      const e = err instanceof PowerError ? err : new PowerError('failed', (err as Error).message);
      const ms = Date.now() - started;
      bus.emit({
        type: 'power.failed',
        machine: uuid,
        key: uuid,
        data: { action, ms, code: e.code, error: e.message },
      });
      await boots.record(uuid, { kind: POWER_KIND, detail: `${action} failed: ${e.message}`, data: { code: e.code } });
      log.warn({ machine: m.name, bmc: bmc.address, action, code: e.code, ms }, `power: ${e.message}`);
      throw e;
    } finally {
      clearTimeout(timer);
      // A Redfish session is a BMC resource (often a handful per BMC): released after every operation.
      await driver
        .close?.()
        .catch((err: Error) => log.debug({ err, bmc: bmc.address }, 'power: closing the BMC session'));
      release();
      done();
      if (tails.get(key) === tail) tails.delete(key);
    }
  }

  return {
    status: (uuid: string): Promise<PowerState> => call(uuid, 'status', (d, s) => d.status(s)),
    power: (uuid: string, action: PowerAction): Promise<void> => call(uuid, action, (d, s) => d.power(action, s)),
    setBootDevice: (uuid: string, o: BootOverride): Promise<void> =>
      call(uuid, `bootdev:${o.device}${o.persistent ? ' persistent' : ''}${o.uefi ? ' uefi' : ''}`, (d, s) =>
        d.setBootDevice(o, s),
      ),
    /** Calls in flight now (for /metrics and tests). */
    get inFlight() {
      return slots.inFlight;
    },
  };
}

/**
 * UEFI when the machine's last firmware DHCP request said so: its client architecture (RFC 4578 option 93, kept in
 * the timeline's DHCP entries) 0-5 are BIOS-era types, 6 and up EFI. No DHCP seen yet: arm64 has no BIOS.
 */
export function lastBootUefi(m: Pick<Machine, 'arch'>, timeline: Boot[]): boolean {
  for (const b of timeline) {
    for (let i = b.events.length - 1; i >= 0; i--) {
      const arch = b.events[i]!.data?.arch;
      if (b.events[i]!.kind === 'dhcp' && typeof arch === 'number') return arch >= 6;
    }
  }
  return m.arch === 'arm64';
}
