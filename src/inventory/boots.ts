import { randomUUID } from 'node:crypto';
import type { Store } from '../store/store.js';

/**
 * Every boot of a machine as a timeline: the DHCP exchange (what was offered and why), each TFTP and HTTP fetch,
 * each render (and its error), the bootEnv and the artifact digests served, and how it ended. An operator can
 * tell which image a machine runs and why a boot failed without a packet capture.
 */
export type BootEventKind =
  | 'dhcp'
  | 'tftp'
  | 'http'
  | 'render'
  | 'refused'
  | 'callback'
  | 'discovery'
  | 'power'
  | 'reprovision';
export type BootEvent = { at: string; kind: BootEventKind; detail: string; data?: Record<string, unknown> };
export type Boot = {
  id: string;
  machine: string;
  startedAt: string;
  updatedAt: string;
  bootEnv?: string;
  artifacts: { path: string; sha256: string }[];
  result?: 'booted' | 'failed';
  events: BootEvent[];
};

const MAX_EVENTS = 200;
const STALE_MS = 15 * 60 * 1000;

export type BootRecorder = ReturnType<typeof bootRecorder>;

/**
 * Keeps each machine's current boot in memory and writes it through with the store's batched writes (packet
 * rate, one commit per event-loop turn). A new boot begins when firmware starts over: a firmware DHCP request
 * (PXEClient/HTTPClient) after the current boot already rendered its script or ended, or after 15 minutes.
 */
export function bootRecorder(store: Store, now: () => Date = () => new Date()) {
  const current = new Map<string, Boot>();

  const load = async (machine: string): Promise<Boot | undefined> => {
    const hit = current.get(machine);
    if (hit) return hit;
    const { items } = await store.list('boots', {
      filters: [{ field: 'machine', value: machine }],
      sort: { field: 'startedAt', desc: true },
      limit: 1,
    });
    const b = items[0]?.doc as Boot | undefined;
    if (b) current.set(machine, b);
    return b;
  };

  const start = (machine: string, at: string): Boot => {
    const b: Boot = {
      id: `${at}-${randomUUID().slice(0, 8)}`,
      machine,
      startedAt: at,
      updatedAt: at,
      artifacts: [],
      events: [],
    };
    current.set(machine, b);
    return b;
  };

  return {
    async record(
      machine: string,
      event: Omit<BootEvent, 'at'>,
      opts: { firmwareStart?: boolean; bootEnv?: string; artifacts?: Boot['artifacts']; result?: Boot['result'] } = {},
    ): Promise<Boot> {
      const at = now().toISOString();
      let b = await load(machine);
      const stale = b && now().getTime() - Date.parse(b.updatedAt) > STALE_MS;
      const rendered = b?.events.some((e) => e.kind === 'render');
      if (!b || stale || (opts.firmwareStart && (rendered || b.result))) b = start(machine, at);
      if (b.events.length < MAX_EVENTS) b.events.push({ at, ...event });
      b.updatedAt = at;
      if (opts.bootEnv) b.bootEnv = opts.bootEnv;
      if (opts.artifacts) b.artifacts = opts.artifacts;
      if (opts.result) b.result = opts.result;
      await store.putBatched('boots', `${machine}/${b.id}`, b);
      return b;
    },
    async list(machine: string, limit = 50): Promise<Boot[]> {
      const { items } = await store.list('boots', {
        filters: [{ field: 'machine', value: machine }],
        sort: { field: 'startedAt', desc: true },
        limit,
      });
      return items.map((i) => i.doc as Boot);
    },
    forget(machine: string) {
      current.delete(machine);
    },
  };
}
