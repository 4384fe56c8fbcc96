import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { baseUrl, type ServerView } from '../boot/render.js';
import type { Bus } from '../events.js';
import { fileInfo } from '../files/store-files.js';
import type { BootRecorder } from '../inventory/boots.js';
import { tokenChecker } from '../inventory/tokens.js';
import type { Logger } from '../log.js';
import { Mac } from '../model/common.js';
import type { Machine } from '../model/machine.js';
import { type BootService, bootService } from '../provision/boot-render.js';
import { type DiscoveryLimits, discovery } from '../provision/discovery.js';
import { dhcpEvidence } from '../provision/evidence.js';
import { machineReports } from '../provision/reports.js';
import { requestToken, sourceAddress, type Trust, trustRule } from '../provision/trust.js';
import type { Store } from '../store/store.js';
import type { ServeHooks } from './files-serve.js';
import { registerMachineApiRoutes } from './machine-api.js';
import { sendProblem } from './problem.js';

type Deps = {
  store: Store;
  bus: Bus;
  log: Logger;
  filesDir: string;
  boots: BootRecorder;
  advertiseAddress?: string;
  /** The daemon's one trust rule (shared with TFTP, fed by its DHCP evidence); absent: one of its own on `bus`. */
  trust?: Trust;
  /** Discovery's per-source rate and cap on unclaimed machines (src/provision/discovery.ts). */
  discovery?: Partial<DiscoveryLimits>;
  /** The daemon's boot renderer (shared with TFTP); absent: one of its own. */
  boot?: BootService;
  /** With TLS on: the plain HTTP port boot files are fetched from, whichever listener the script was asked on. */
  plainHttpPort?: () => number | undefined;
  /** With --ipxe-https: the HTTPS port the generic iPXE script chains to. */
  ipxeHttpsPort?: () => number | undefined;
};

/** The address this machine reached us at: the interface that answered, unless the operator set one. */
export function serverView(req: FastifyRequest, advertise?: string, plainPort?: () => number | undefined): ServerView {
  const local = (req.socket.localAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
  // A script asked for over HTTPS still names plain-HTTP URLs: kernels, initrds and callbacks are fetched by
  // firmware and busybox wget, which speak no TLS.
  const encrypted = (req.socket as { encrypted?: boolean }).encrypted === true;
  const port = (encrypted ? plainPort?.() : undefined) ?? req.socket.localPort ?? 8091;
  return { address: advertise ?? local, httpPort: port };
}

/**
 * Hooks for /files: refuse an artifact whose bytes no longer match the digest a bootenv pins, and record each
 * fetch in the requesting machine's boot timeline (found by its address).
 */
export function fileHooks(deps: Deps): ServeHooks {
  const { store, bus, log, boots } = deps;
  let pins: Promise<Map<string, { sha256: string; bootEnv: string }>> | undefined;
  bus.on((e) => {
    if (e.type.startsWith('bootenvs.')) pins = undefined;
  });
  const loadPins = async () => {
    const { items } = await store.list('bootenvs');
    const m = new Map<string, { sha256: string; bootEnv: string }>();
    for (const b of items)
      for (const a of (b.doc.artifacts as { path: string; sha256: string }[]) ?? [])
        m.set(a.path, { sha256: a.sha256, bootEnv: b.key });
    return m;
  };
  const machineAt = async (ip: string) =>
    (await store.list('machines', { filters: [{ field: 'address', value: ip }], limit: 1 })).items[0]?.key;
  return {
    async refuse(rel) {
      pins ??= loadPins().catch((err) => {
        pins = undefined;
        throw err;
      });
      const pin = (await pins).get(rel);
      if (!pin) return undefined;
      const info = await fileInfo(store, deps.filesDir, rel);
      if (info && info.sha256 === pin.sha256) return undefined;
      const why = `artifact ${rel} of bootenv ${pin.bootEnv} has sha256 ${info?.sha256}, but the bootenv pins ${pin.sha256}: refusing to serve it`;
      log.error(
        { path: rel, bootEnv: pin.bootEnv, expected: pin.sha256, actual: info?.sha256 },
        'artifact digest mismatch: not served',
      );
      return why;
    },
    served(rel, req, status) {
      const ip = req.ip.replace(/^::ffff:/, '');
      machineAt(ip)
        .then((uuid) => {
          if (uuid)
            return boots.record(uuid, {
              kind: 'http',
              detail: `GET /files/${rel} -> ${status}`,
              data: { path: rel, status },
            });
        })
        .catch(() => {});
    },
  };
}

/**
 * The boot routes firmware and installers fetch without credentials: parse, ask src/provision (which machine,
 * is the requester that machine), render, reply. Returns `registerMachineApi` for the API scope: the routes a
 * booted machine calls with its token.
 */
export function registerBootRoutes(app: FastifyInstance, deps: Deps) {
  const { store, log, boots } = deps;
  const svc = deps.boot ?? bootService(deps);
  const trust = deps.trust ?? trustRule({ store, evidence: dhcpEvidence(deps.bus), checkToken: tokenChecker(store) });
  const disc = discovery({ store, bus: deps.bus, log, boots, trust, limits: deps.discovery });
  const reports = machineReports({ store, bus: deps.bus, log, boots, bootEnvOf: svc.bootEnvOf });

  const renderFor = async (req: FastifyRequest, reply: FastifyReply, m: Machine, file: string, known = true) => {
    const verdict = known
      ? await trust.isTheMachine({
          transport: 'http',
          source: req.ip,
          machine: m,
          token: requestToken(req.headers.authorization, req.query),
        })
      : ({ machine: false, why: 'not in the inventory' } as const);
    const r = await svc.render(m, file, {
      server: serverView(req, deps.advertiseAddress, deps.plainHttpPort),
      trust: verdict,
      via: 'HTTP',
      record: known,
    });
    if (!r.ok) return ipxeOrProblem(reply, file, r.status, r.detail);
    return reply
      .type(file.endsWith('.json') || file.endsWith('.ign') ? 'application/json' : 'text/plain; charset=utf-8')
      .send(r.text);
  };

  // The generic script every iPXE gets first (DHCP hands it out): it chains to the machine's own by MAC, and
  // passes the facts discovery needs (arch, SMBIOS UUID, serial) so an unknown machine can be registered.
  app.get('/boot/ipxe', async (req, reply) => {
    const view = serverView(req, deps.advertiseAddress, deps.plainHttpPort);
    const httpsPort = deps.ipxeHttpsPort?.();
    // --ipxe-https: the machine's own script (which may carry its token and secrets) comes over TLS.
    const base = httpsPort ? `https://${view.address}:${httpsPort}` : baseUrl(view);
    reply.type('text/plain; charset=utf-8');
    return [
      '#!ipxe',
      'echo Plinth: ${netX/mac} asks what to boot',
      `chain --autofree ${base}/boot/ipxe/\${netX/mac:hexhyp}?arch=\${buildarch}&platform=\${platform}&uuid=\${uuid}&serial=\${serial:uristring} || goto failed`,
      'exit',
      ':failed',
      'echo Plinth: could not fetch the boot script for ${netX/mac}; retrying in 10 s',
      'sleep 10',
      'chain --autofree ' + `${base}/boot/ipxe`,
      '',
    ].join('\n');
  });

  app.get<{ Params: { mac: string }; Querystring: Record<string, string> }>('/boot/ipxe/:mac', async (req, reply) => {
    const parsed = Mac.safeParse(req.params.mac);
    if (!parsed.success) return ipxeOrProblem(reply, 'boot.ipxe', 400, `'${req.params.mac}' is not a MAC address`);
    const q = req.query;
    const ip = sourceAddress(req.ip);
    const r = await disc.resolve({
      mac: parsed.data,
      source: ip,
      arch: q.arch,
      platform: q.platform,
      uuid: q.uuid,
      serial: q.serial,
    });
    if (r.kind === 'anonymous') return renderFor(req, reply, r.machine, 'boot.ipxe', false);
    await boots.record(r.machine.uuid, {
      kind: 'http',
      detail: `GET /boot/ipxe/${req.params.mac} from ${ip}`,
      data: { arch: q.arch, platform: q.platform },
    });
    return renderFor(req, reply, r.machine, 'boot.ipxe');
  });

  app.get<{ Params: { uuid: string; '*': string } }>('/machines/:uuid/*', async (req, reply) => {
    const s = await store.get('machines', req.params.uuid);
    if (!s) return sendProblem(reply, 404, `machine '${req.params.uuid}' does not exist`);
    const m = s.doc as Machine;
    const file = req.params['*'];
    await boots.record(m.uuid, {
      kind: 'http',
      detail: `GET /machines/${m.uuid}/${file} from ${sourceAddress(req.ip)}`,
    });
    return renderFor(req, reply, m, file);
  });

  return {
    /** Registers the machine API routes in `api`, the API's scope (prefix /api/v1, bearer check). */
    registerMachineApi: (api: FastifyInstance) => registerMachineApiRoutes(api, { reports }),
  };
}

/**
 * iPXE shows a script's echo on the console but drops the body of a non-2xx answer: errors for iPXE scripts go out
 * as a 200 script that says what is wrong and does not boot (the log and the boot timeline carry the error too).
 */
function ipxeOrProblem(reply: FastifyReply, file: string, status: number, detail: string) {
  if (file.endsWith('ipxe')) {
    return reply
      .code(200)
      .header('x-plinth-error', String(status))
      .type('text/plain; charset=utf-8')
      .send(
        `#!ipxe\necho Plinth: ${detail.replace(/[\r\n]/g, ' ')}\necho Plinth: not booting; retrying in 30 s\nsleep 30\nexit 1\n`,
      );
  }
  return sendProblem(reply, status, detail);
}
