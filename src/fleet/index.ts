/**
 * The fleet: power control, single-machine reprovision and rollouts, built once per daemon (src/wiring.ts) on the
 * power service and a driver factory that is injected (tests pass a fake BMC, the daemon src/power's createDriver).
 */
import { type PowerService, type PowerServiceOptions, powerService } from '../power/service.js';
import { DEFAULT_TIMING, type ReprovisionState, reprovisioner, type Timing } from './reprovision.js';
import { RolloutEngine } from './rollouts.js';
import { singleReprovisions } from './singles.js';

/** The power service's options (the fleet builds it) and the reprovision and rollout timings. */
export type FleetOptions = PowerServiceOptions & {
  timing?: Partial<Timing>;
  healthPollMs?: number;
};

export type Fleet = {
  power: PowerService;
  rollouts: RolloutEngine;
  /** Starts a machine's reprovision in the background (persisted: a restart resumes it); 409 when one runs. */
  reprovision(uuid: string, bootEnv: string): Promise<ReprovisionState>;
  /** The machine's latest reprovision started by the API (outside a rollout). */
  lastReprovision(uuid: string): Promise<ReprovisionState | undefined>;
  /** Resumes the rollouts and single reprovisions that were running (call once DHCP listens). */
  start(): Promise<void>;
  close(): Promise<void>;
};

export function createFleet(o: FleetOptions): Fleet {
  const power = powerService(o);
  const timing = { ...DEFAULT_TIMING, ...o.timing };
  const rp = reprovisioner({ ...o, power }, timing);
  const busy = new Set<string>();
  const rollouts = new RolloutEngine({ ...o, reprovision: rp, busy, timing: o.timing, healthPollMs: o.healthPollMs });
  const singles = singleReprovisions({ store: o.store, log: o.log, reprovision: rp, busy });
  let started: Promise<void> | undefined;
  return {
    power,
    rollouts,
    reprovision: (uuid, bootEnv) => singles.start(uuid, bootEnv),
    lastReprovision: (uuid) => singles.last(uuid),
    start() {
      started ??= Promise.all([rollouts.start(), singles.resume()]).then(() => undefined);
      return started;
    },
    async close() {
      await Promise.all([rollouts.close(), singles.close()]);
    },
  };
}
