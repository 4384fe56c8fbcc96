/**
 * The fleet: power control, single-machine reprovision and rollouts, built once per daemon (src/wiring.ts) on the
 * power service and a driver factory that is injected (tests pass a fake BMC, the daemon src/power's createDriver).
 * Rollouts and single reprovisions are driven by one daemon at a time, the leader (src/leader.ts); any daemon's
 * API may start or change them through their documents.
 */
import { type Leadership, soleLeadership, whileLeading } from '../leader.js';
import { type PowerService, type PowerServiceOptions, powerService } from '../power/service.js';
import type { LoggedEvent } from '../store/store.js';
import { DEFAULT_TIMING, type ReprovisionState, reprovisioner, type Timing } from './reprovision.js';
import { RolloutEngine } from './rollouts.js';
import { REQUESTED, singleReprovisions } from './singles.js';

/** The power service's options (the fleet builds it) and the reprovision and rollout timings. */
export type FleetOptions = PowerServiceOptions & {
  timing?: Partial<Timing>;
  healthPollMs?: number;
  /** Who drives rollouts among daemons sharing the inventory (default: this one alone). */
  leadership?: Leadership;
};

export type Fleet = {
  power: PowerService;
  rollouts: RolloutEngine;
  /** Starts a machine's reprovision in the background (persisted: a restart resumes it); 409 when one runs. */
  reprovision(uuid: string, bootEnv: string): Promise<ReprovisionState>;
  /** The machine's latest reprovision started by the API (outside a rollout). */
  lastReprovision(uuid: string): Promise<ReprovisionState | undefined>;
  /**
   * Drives from now on whenever this daemon leads (call once DHCP listens): the rollouts and single reprovisions
   * that were running resume at each gain of the lead, and stop at each loss.
   */
  start(): Promise<void>;
  /** An event another daemon wrote to the shared log: the leader picks up rollouts and reprovisions changed there. */
  peerChange(e: LoggedEvent): void;
  close(): Promise<void>;
};

export function createFleet(o: FleetOptions): Fleet {
  const power = powerService(o);
  const timing = { ...DEFAULT_TIMING, ...o.timing };
  const rp = reprovisioner({ ...o, power }, timing);
  const busy = new Set<string>();
  const rollouts = new RolloutEngine({ ...o, reprovision: rp, busy, timing: o.timing, healthPollMs: o.healthPollMs });
  const singles = singleReprovisions({ store: o.store, log: o.log, reprovision: rp, busy });
  const leadership = o.leadership ?? soleLeadership();
  let stop: (() => Promise<void>) | undefined;
  let closed = false;
  return {
    power,
    rollouts,
    reprovision: (uuid, bootEnv) => singles.start(uuid, bootEnv),
    lastReprovision: (uuid) => singles.last(uuid),
    async start() {
      if (stop || closed) return;
      stop = whileLeading(
        leadership,
        () => {
          const started = Promise.all([rollouts.start(), singles.resume()]).catch((err) =>
            o.log.error({ err }, 'rollouts could not resume; they do at the next start or change of leader'),
          );
          return async () => {
            await started;
            await Promise.all([rollouts.suspend(), singles.suspend()]);
          };
        },
        o.log,
      );
    },
    peerChange(e) {
      if (!e.key) return;
      if (e.type === 'rollout.progress') rollouts.peerChange(e.key);
      // Only requests: what another daemon drove, a new leader resumed when it gained the lead.
      else if (e.type === REQUESTED)
        void singles.peerChange(e.key).catch((err) => o.log.warn({ err }, 'reprovision requested elsewhere: not read'));
    },
    async close() {
      closed = true;
      await stop?.();
      await Promise.all([rollouts.suspend(), singles.suspend()]);
    },
  };
}
