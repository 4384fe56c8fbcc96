/**
 * What a boot does, in one object every transport asks (the daemon builds one and injects it into HTTP and TFTP):
 * which machine a request is (discovery), whether the requester is that machine (the one trust rule), the render,
 * the boot timeline of each request, the artifact pins /files honours, and what a booted machine reports. The
 * transports parse, call one method here, and map the transport-neutral outcome to their reply.
 */
import type { ServerView } from '../boot/render.js';
import type { Bus } from '../events.js';
import type { BootRecorder } from '../inventory/boots.js';
import type { Logger } from '../log.js';
import type { Machine } from '../model/machine.js';
import type { Store } from '../store/store.js';
import { type ArtifactCheck, artifactCheck } from './artifacts.js';
import { bootRenderer, type RenderOutcome } from './boot-render.js';
import { type BootRequest, type DiscoveryLimits, discovery } from './discovery.js';
import type { RenderTokens } from './render-token.js';
import { machineReports } from './reports.js';
import { sourceAddress, type Transport, type Trust, type TrustVerdict } from './trust.js';

export type BootServiceDeps = {
  store: Store;
  bus: Bus;
  log: Logger;
  filesDir: string;
  boots: BootRecorder;
  /** The daemon's one trust rule (fed by its DHCP evidence). */
  trust: Trust;
  /** Discovery's per-source rate and cap on unclaimed machines. */
  discovery?: Partial<DiscoveryLimits>;
  tokens?: RenderTokens;
  artifacts?: ArtifactCheck;
};

/** Who asks: the source address, a token if the request carried one, and Plinth's address as it reached us. */
export type Requester = { source: string; token?: string; server: ServerView };

/** `GET /boot/ipxe/<mac>`: `asked` is the MAC as the URL spelled it (for the timeline). */
export type IpxeRequest = BootRequest & Requester & { asked: string };

export type MachineFileRequest = Requester & { uuid: string; file: string; transport: Transport };

const NOT_IN_INVENTORY: TrustVerdict = { machine: false, why: 'not in the inventory' };

export function bootService(deps: BootServiceDeps) {
  const { store, log, boots, trust } = deps;
  const artifacts = deps.artifacts ?? artifactCheck(deps);
  const renderer = bootRenderer({ ...deps, artifacts });
  const disc = discovery({ store, bus: deps.bus, log, boots, trust, limits: deps.discovery });
  const reports = machineReports({ store, bus: deps.bus, log, boots, bootEnvOf: renderer.bootEnvOf });

  const renderFor = async (m: Machine, file: string, q: Requester, transport: Transport) => {
    const verdict = await trust.isTheMachine({ transport, source: q.source, machine: m, token: q.token });
    const via = transport === 'http' ? 'HTTP' : 'TFTP';
    return renderer.render(m, file, { server: q.server, trust: verdict, via });
  };

  const machineAt = async (ip: string) =>
    (await store.list('machines', { filters: [{ field: 'address', value: ip }], limit: 1 })).items[0]?.key;

  return {
    bootEnvOf: renderer.bootEnvOf,
    render: renderer.render,
    reports,

    /** The machine's iPXE script by MAC: discovery decides which machine (or none) the request is. */
    async ipxeByMac(q: IpxeRequest): Promise<RenderOutcome> {
      const ip = sourceAddress(q.source);
      const r = await disc.resolve({ ...q, source: ip });
      if (r.kind === 'anonymous')
        return renderer.render(r.machine, 'boot.ipxe', {
          server: q.server,
          trust: NOT_IN_INVENTORY,
          via: 'HTTP',
          record: false,
        });
      await boots.record(r.machine.uuid, {
        kind: 'http',
        detail: `GET /boot/ipxe/${q.asked} from ${ip}`,
        data: { arch: q.arch, platform: q.platform },
      });
      return renderFor(r.machine, 'boot.ipxe', q, 'http');
    },

    /** One file of a machine's bootenv by its uuid (`/machines/<uuid>/<file>` over HTTP or TFTP). */
    async machineFile(q: MachineFileRequest): Promise<RenderOutcome> {
      const m = (await store.get('machines', q.uuid))?.doc as Machine | undefined;
      if (!m) return { ok: false, reason: 'not-found', detail: `machine '${q.uuid}' does not exist` };
      // Over TFTP the fetch is in the timeline of the machine at the client's address (src/provision/tftp-source.ts).
      if (q.transport === 'http')
        await boots.record(m.uuid, {
          kind: 'http',
          detail: `GET /machines/${m.uuid}/${q.file} from ${sourceAddress(q.source)}`,
        });
      return renderFor(m, q.file, q, q.transport);
    },

    /** Why /files must not serve `rel` (a pinned artifact whose bytes changed), or undefined. */
    refuseFile: artifacts.refuse,

    /** A file /files answered (`status`), in the timeline of the machine at the requester's address. */
    fileServed(rel: string, source: string, status: number): void {
      machineAt(sourceAddress(source))
        .then((uuid) => {
          if (uuid)
            return boots.record(uuid, {
              kind: 'http',
              detail: `GET /files/${rel} -> ${status}`,
              data: { path: rel, status },
            });
        })
        .catch((err) => log.debug({ err: (err as Error).message, path: rel }, 'files: timeline not recorded'));
    },

    close(): void {
      artifacts.close();
    },
  };
}
export type BootService = ReturnType<typeof bootService>;
