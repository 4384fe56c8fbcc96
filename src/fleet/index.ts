/**
 * The fleet: power control, single-machine reprovision and rollouts, built once per daemon (src/wiring.ts) on the
 * power service and a driver factory that is injected (tests pass a fake BMC, the daemon src/power's createDriver).
 */
import { type PowerService, type PowerServiceOptions, powerService } from '../power/service.js';
import { DEFAULT_TIMING, type ReprovisionState, reprovisioner, type Timing } from './reprovision.js';
import { RolloutEngine, RolloutError } from './rollouts.js';

/** The power service's options (the fleet builds it) and the reprovision and rollout timings. */
export type FleetOptions = PowerServiceOptions & {
  timing?: Partial<Timing>;
  healthPollMs?: number;
};

export type Fleet = {
  power: PowerService;
  rollouts: RolloutEngine;
  /** Starts a machine's reprovision in the background; 409 when one is running for it. */
  reprovision(uuid: string, bootEnv: string): ReprovisionState;
  /** The machine's latest reprovision started by the API since the daemon started. */
  lastReprovision(uuid: string): ReprovisionState | undefined;
  /** Resumes the rollouts that were running (call once DHCP listens). */
  start(): Promise<void>;
  close(): Promise<void>;
};

export function createFleet(o: FleetOptions): Fleet {
  const power = powerService(o);
  const timing = { ...DEFAULT_TIMING, ...o.timing };
  const rp = reprovisioner({ ...o, power }, timing);
  const busy = new Set<string>();
  const rollouts = new RolloutEngine({ ...o, reprovision: rp, busy, timing: o.timing, healthPollMs: o.healthPollMs });
  const latest = new Map<string, ReprovisionState>();
  const ctl = new AbortController();
  let started: Promise<void> | undefined;
  return {
    power,
    rollouts,
    reprovision(uuid, bootEnv) {
      if (busy.has(uuid)) throw new RolloutError(409, 'the machine is being reprovisioned already');
      busy.add(uuid);
      const at = new Date().toISOString();
      const s: ReprovisionState = { machine: uuid, bootEnv, step: 'assign', stepAt: at, startedAt: at, steps: [] };
      latest.set(uuid, s);
      rp.run(uuid, bootEnv, {
        signal: ctl.signal,
        checkpoint: async (next) => {
          latest.set(uuid, { ...next, steps: [...next.steps] });
        },
      })
        .then((end) => latest.set(uuid, end))
        .catch((err) => o.log.error({ err, machine: uuid }, 'reprovision stopped on an error'))
        .finally(() => busy.delete(uuid));
      return s;
    },
    lastReprovision: (uuid) => latest.get(uuid),
    start() {
      started ??= rollouts.start();
      return started;
    },
    async close() {
      ctl.abort();
      await rollouts.close();
    },
  };
}
