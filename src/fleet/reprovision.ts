/**
 * Reprovision one machine with nobody at the rack: assign the bootenv, set the next boot to PXE once (read back by
 * the driver), power-cycle it (power on when off), wait for its DHCP and boot, and succeed when its OS calls back
 * `booted`. A BMC that answers 200 and ignores the override is common: with no DHCP from the machine in time it
 * is retried once (off, wait, override again, on), then fails with that reason.
 *
 * Each step is handed to `checkpoint` before it acts, so a caller that persists it (a rollout) can resume after a
 * restart without acting twice: a resumed run never repeats a power action it had started, it waits instead.
 * What happened is read from the machine's boot timeline (DHCP and callback entries), so a DHCP exchange or a
 * callback that came while the daemon was down counts too.
 */
import type { Bus } from '../events.js';
import type { Boot, BootEventKind, BootRecorder } from '../inventory/boots.js';
import { modifyDoc } from '../inventory/crud.js';
import { inventoryResource } from '../inventory/resources.js';
import type { Logger } from '../log.js';
import type { Machine } from '../model/machine.js';
import { PowerError } from '../power/driver.js';
import { lastBootUefi, type PowerService } from '../power/service.js';
import type { Store } from '../store/store.js';

export const STEPS = ['assign', 'bootdev', 'power', 'dhcp', 'fallback', 'booting', 'done', 'failed'] as const;
export type Step = (typeof STEPS)[number];

/** Where a reprovision is: persisted by rollouts, kept in memory for a single machine's. */
export type ReprovisionState = {
  machine: string;
  bootEnv: string;
  step: Step;
  /** When the current step began (ISO): what its wait counts from. */
  stepAt: string;
  startedAt: string;
  finishedAt?: string;
  reason?: string;
  /** Each step and when it began, for the API. */
  steps: { step: Step; at: string }[];
};

export type Timing = {
  /** From the power action to the machine's first DHCP request. */
  dhcpTimeoutMs: number;
  /** From its DHCP to its OS's `booted` callback. */
  bootTimeoutMs: number;
  /** The fallback's pause between off and on. */
  offPauseMs: number;
};

export const DEFAULT_TIMING: Timing = { dhcpTimeoutMs: 300_000, bootTimeoutMs: 1_800_000, offPauseMs: 10_000 };

export type ReprovisionDeps = {
  store: Store;
  bus: Bus;
  log: Logger;
  boots: BootRecorder;
  power: PowerService;
};

export type RunOptions = {
  /** A persisted state to resume from. */
  from?: ReprovisionState;
  checkpoint?: (s: ReprovisionState) => Promise<void>;
  signal?: AbortSignal;
  timing?: Partial<Timing>;
};

const REPROVISION_KIND: BootEventKind = 'reprovision';
const machinesRes = inventoryResource('machines');
const stepIndex = (s: Step) => STEPS.indexOf(s);

export class ReprovisionFailed extends Error {}

/** What the timeline says happened to a machine since `since`: a DHCP exchange, a callback. */
export function timelineSince(timeline: Boot[], since: string) {
  let dhcp = false;
  let callback: 'booted' | 'failed' | undefined;
  let detail = '';
  for (const b of timeline) {
    for (const e of b.events) {
      if (e.at < since) continue;
      if (e.kind === 'dhcp') dhcp = true;
      if (e.kind === 'callback' && /^(booted|failed) /.test(e.detail)) {
        callback = e.detail.startsWith('booted') ? 'booted' : 'failed';
        detail = e.detail;
      }
    }
  }
  return { dhcp, callback, detail };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ReprovisionFailed('aborted'));
    const t = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', abort);
      resolve();
    }
    function abort() {
      clearTimeout(t);
      reject(new ReprovisionFailed('aborted'));
    }
    signal?.addEventListener('abort', abort, { once: true });
  });
}

export function reprovisioner(deps: ReprovisionDeps, defaults: Timing = DEFAULT_TIMING) {
  const { store, bus, log, boots, power } = deps;

  /** Waits until `test` holds on the machine's timeline; checks when the machine's events arrive and each second. */
  async function until(uuid: string, ms: number, signal: AbortSignal | undefined, test: (t: Boot[]) => boolean) {
    const end = Date.now() + ms;
    let wake: (() => void) | undefined;
    const off = bus.on((e) => {
      if (e.machine === uuid || e.type === 'lease.acked') setTimeout(() => wake?.(), 50);
    });
    try {
      for (;;) {
        if (test(await boots.list(uuid, 5))) return true;
        const left = end - Date.now();
        if (left <= 0) return false;
        if (signal?.aborted) throw new ReprovisionFailed('aborted');
        await new Promise<void>((r) => {
          const t = setTimeout(r, Math.min(left, 1000));
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
      }
    } finally {
      off();
    }
  }

  async function run(uuid: string, bootEnv: string, o: RunOptions = {}): Promise<ReprovisionState> {
    const t = { ...defaults, ...o.timing };
    const began = new Date().toISOString();
    const s: ReprovisionState = o.from
      ? { ...o.from, steps: [...o.from.steps] }
      : { machine: uuid, bootEnv, step: 'assign', stepAt: began, startedAt: began, steps: [] };
    const resumedAt = stepIndex(s.step);
    const t0 = Date.parse(s.startedAt);
    /** Persists the step before it acts; false when a resumed run has already begun it (do not act again). */
    const enter = async (step: Step, detail: string): Promise<boolean> => {
      // The step a resumed run stopped in was persisted before it acted: it may have acted, so never again.
      if (o.from && stepIndex(step) <= resumedAt) return false;
      s.step = step;
      s.stepAt = new Date().toISOString();
      s.steps.push({ step, at: s.stepAt });
      await o.checkpoint?.(s);
      const ms = Date.now() - t0;
      bus.emit({ type: 'reprovision.step', machine: uuid, key: uuid, data: { bootEnv, step, ms } });
      await boots.record(uuid, { kind: REPROVISION_KIND, detail: `${step}: ${detail} (+${ms} ms)` });
      return true;
    };
    const stepStart = (step: Step) => s.steps.findLast((x) => x.step === step)?.at ?? s.stepAt;
    try {
      if (await enter('assign', `bootenv ${bootEnv}`)) {
        await modifyDoc({ store, bus }, machinesRes, uuid, (d) => ({ ...d, bootEnv }));
      }
      const m = (await store.get('machines', uuid))?.doc as Machine | undefined;
      if (!m) throw new ReprovisionFailed(`machine '${uuid}' does not exist`);
      const uefi = lastBootUefi(m, await boots.list(uuid, 5));
      const override = { device: 'pxe', persistent: false, uefi } as const;
      if (await enter('bootdev', `next boot PXE once${uefi ? ' (UEFI)' : ''}`)) {
        await bootOnce(uuid, override);
      }
      if (await enter('power', 'power cycle (on if off)')) {
        const state = await power.status(uuid).catch(() => 'unknown');
        await power.power(uuid, state === 'off' ? 'on' : 'cycle');
      }
      const sawDhcp = (since: string) => (tl: Boot[]) => timelineSince(tl, since).dhcp;
      let dhcp = false;
      if (stepIndex(s.step) <= stepIndex('dhcp')) {
        await enter('dhcp', `waiting ${t.dhcpTimeoutMs / 1000} s for the machine's DHCP`);
        dhcp = await until(uuid, t.dhcpTimeoutMs, o.signal, sawDhcp(stepStart('power')));
      }
      if (!dhcp && stepIndex(s.step) <= stepIndex('fallback')) {
        if (await enter('fallback', 'no DHCP from the machine: off, wait, PXE once again, on')) {
          await power.power(uuid, 'off').catch(() => undefined);
          await sleep(t.offPauseMs, o.signal);
          await bootOnce(uuid, override);
          await power.power(uuid, 'on');
        }
        if (!(await until(uuid, t.dhcpTimeoutMs, o.signal, sawDhcp(stepStart('fallback'))))) {
          throw new ReprovisionFailed(
            `BMC ignored the boot override: no DHCP from the machine within ${t.dhcpTimeoutMs / 1000} s of a power cycle and of one retry`,
          );
        }
      }
      await enter('booting', `waiting ${t.bootTimeoutMs / 1000} s for its OS to call back booted`);
      const since = stepStart('power');
      const called = (tl: Boot[]) => timelineSince(tl, since).callback !== undefined;
      if (!(await until(uuid, t.bootTimeoutMs, o.signal, called))) {
        throw new ReprovisionFailed(`no booted callback from the machine within ${t.bootTimeoutMs / 1000} s`);
      }
      const cb = timelineSince(await boots.list(uuid, 5), since);
      if (cb.callback === 'failed') throw new ReprovisionFailed(`the machine reported a failed boot: ${cb.detail}`);
      s.finishedAt = new Date().toISOString();
      await enter('done', `booted bootenv ${bootEnv}`);
      bus.emit({ type: 'reprovision.done', machine: uuid, key: uuid, data: { bootEnv, ms: Date.now() - t0 } });
      return s;
    } catch (err) {
      const reason = (err as Error).message;
      s.reason = reason;
      s.finishedAt = new Date().toISOString();
      s.step = 'failed';
      s.stepAt = s.finishedAt;
      s.steps.push({ step: 'failed', at: s.finishedAt });
      await o.checkpoint?.(s);
      bus.emit({ type: 'reprovision.failed', machine: uuid, key: uuid, data: { bootEnv, reason } });
      await boots.record(uuid, { kind: REPROVISION_KIND, detail: `failed: ${reason}` }, { result: 'failed' });
      log.warn({ machine: uuid, bootEnv, reason }, 'reprovision failed');
      return s;
    }
  }

  /** The override; one the BMC did not keep is noted and the power cycle goes ahead (the fallback retries it). */
  async function bootOnce(uuid: string, override: { device: 'pxe'; persistent: false; uefi: boolean }) {
    try {
      await power.setBootDevice(uuid, override);
    } catch (err) {
      if (!(err instanceof PowerError && err.code === 'override-ignored')) throw err;
      await boots.record(uuid, { kind: REPROVISION_KIND, detail: `bootdev: the BMC did not keep it: ${err.message}` });
    }
  }

  return { run };
}
export type Reprovisioner = ReturnType<typeof reprovisioner>;
