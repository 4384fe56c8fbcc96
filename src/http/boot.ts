import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { baseUrl, type ServerView } from '../boot/render.js';
import { bootService } from '../boot/service.js';
import type { Bus } from '../events.js';
import { fileInfo } from '../files/store-files.js';
import type { BootRecorder } from '../inventory/boots.js';
import { createDoc, modifyDoc } from '../inventory/crud.js';
import { getPrefs, RESOURCES } from '../inventory/resources.js';
import { type Principal, tokenChecker } from '../inventory/tokens.js';
import type { Logger } from '../log.js';
import { Mac } from '../model/common.js';
import type { Machine } from '../model/machine.js';
import type { Store } from '../store/store.js';
import { API } from './app.js';
import type { ServeHooks } from './files-serve.js';
import { HttpProblem, sendProblem } from './problem.js';

type Deps = {
  store: Store;
  bus: Bus;
  log: Logger;
  filesDir: string;
  boots: BootRecorder;
  advertiseAddress?: string;
};

const machinesRes = RESOURCES.find((r) => r.kind === 'machines')!;

/** The address this machine reached us at: the interface that answered, unless the operator set one. */
export function serverView(req: FastifyRequest, advertise?: string): ServerView {
  const local = (req.socket.localAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
  return { address: advertise ?? local, httpPort: req.socket.localPort ?? 8091 };
}

const zeroUuid = /^(0{8}-0{4}-0{4}-0{4}-0{12}|f{8}-f{4}-f{4}-f{4}-f{12})$/i;

/** Is this request the machine itself (its address, or its own token), so secrets may be rendered into it? */
async function isTheMachine(
  req: FastifyRequest,
  m: Machine,
  check: (t: string) => Promise<Principal | null>,
): Promise<boolean> {
  const q = req.query as { token?: string };
  const auth = /^Bearer\s+(\S+)/i.exec(req.headers.authorization ?? '')?.[1] ?? q.token;
  if (auth) {
    const p = await check(auth);
    if (p && (p.role === 'admin' || p.machine === m.uuid)) return true;
  }
  const ip = req.ip.replace(/^::ffff:/, '');
  return m.address === ip;
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

export function registerBootRoutes(app: FastifyInstance, deps: Deps) {
  const { store, bus, log, boots } = deps;
  const inv = { store, bus };
  const check = tokenChecker(store);

  const svc = bootService(deps);

  const renderFor = async (req: FastifyRequest, reply: FastifyReply, m: Machine, file: string) => {
    const trusted = await isTheMachine(req, m, check);
    const r = await svc.render(m, file, { server: serverView(req, deps.advertiseAddress), trusted, via: 'HTTP' });
    if (!r.ok) return ipxeOrProblem(reply, file, r.status, r.detail);
    return reply
      .type(file.endsWith('.json') || file.endsWith('.ign') ? 'application/json' : 'text/plain; charset=utf-8')
      .send(r.text);
  };

  // The generic script every iPXE gets first (DHCP hands it out): it chains to the machine's own by MAC, and
  // passes the facts discovery needs (arch, SMBIOS UUID, serial) so an unknown machine can be registered.
  app.get('/boot/ipxe', async (req, reply) => {
    const base = baseUrl(serverView(req, deps.advertiseAddress));
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
    const mac = parsed.data;
    const q = req.query;
    const ip = req.ip.replace(/^::ffff:/, '');
    let key = await store.keyOf('machines', 'macs', mac);
    const smbios =
      q.uuid && !zeroUuid.test(q.uuid) && /^[0-9a-f-]{36}$/i.test(q.uuid) ? q.uuid.toLowerCase() : undefined;
    if (!key && smbios) {
      // Known hardware booting from another NIC: add the MAC, never a second record.
      key = await store.keyOf('machines', 'smbiosUuid', smbios);
      if (key) {
        await modifyDoc(inv, machinesRes, key, (d) => ({ ...d, macs: [...((d.macs as string[]) ?? []), mac] }));
        log.info({ mac, machine: key }, 'discovery: known machine (SMBIOS UUID) booted from a new NIC: MAC added');
      }
    }
    if (!key) {
      const prefs = await getPrefs(store);
      const inventory: Record<string, unknown> = {};
      if (smbios) inventory.smbiosUuid = smbios;
      if (q.serial) inventory.serial = q.serial.slice(0, 128);
      if (q.platform) inventory.platform = q.platform.slice(0, 32);
      const created = await createDoc(inv, machinesRes, {
        name: `d-${mac.replace(/:/g, '')}`,
        macs: [mac],
        address: ip,
        arch: archOf(q.arch),
        bootEnv: prefs.unknownBootEnv,
        description: 'discovered: booted by MAC, not yet in the inventory',
        inventory,
      });
      key = created.key;
      log.info({ mac, machine: key, bootEnv: prefs.unknownBootEnv }, 'discovery: unknown MAC registered');
      await boots.record(key, {
        kind: 'discovery',
        detail: `unknown MAC ${mac} registered, boots ${prefs.unknownBootEnv}`,
        data: { ip },
      });
    }
    let m = (await store.get('machines', key))!.doc as Machine;
    // Trust on first use: a machine with no address yet (proxyDHCP, or not booted since it was created) gets the
    // requester's; afterwards secrets are rendered only for that address or with the machine's token.
    if (!m.address || m.lastSeen === undefined) {
      m = (
        await modifyDoc(inv, machinesRes, key, (d) => ({
          ...d,
          address: d.address ?? ip,
          lastSeen: new Date().toISOString(),
          arch: d.arch ?? archOf(q.arch),
        }))
      ).doc as Machine;
    }
    await boots.record(m.uuid, {
      kind: 'http',
      detail: `GET /boot/ipxe/${req.params.mac} from ${ip}`,
      data: { arch: q.arch, platform: q.platform },
    });
    return renderFor(req, reply, m, 'boot.ipxe');
  });

  app.get<{ Params: { uuid: string; '*': string } }>('/machines/:uuid/*', async (req, reply) => {
    const s = await store.get('machines', req.params.uuid);
    if (!s) return sendProblem(reply, 404, `machine '${req.params.uuid}' does not exist`);
    const m = s.doc as Machine;
    const file = req.params['*'];
    await boots.record(m.uuid, { kind: 'http', detail: `GET /machines/${m.uuid}/${file} from ${req.ip}` });
    return renderFor(req, reply, m, file);
  });

  // Callbacks from a booted machine, with its token: "I am up" (ends the boot; onlyOnce bootenvs fall back to
  // local), and discovery's inventory report.
  const callback = async (
    req: FastifyRequest<{ Params: { id: string } }>,
    event: string,
    data: Record<string, unknown>,
  ) => {
    const m = (await store.get('machines', req.params.id))?.doc as Machine | undefined;
    if (!m) throw new HttpProblem(404, `machine '${req.params.id}' does not exist`);
    const result = event === 'booted' ? 'booted' : event === 'failed' ? 'failed' : undefined;
    const b = await boots.record(m.uuid, { kind: 'callback', detail: `${event} from ${req.ip}`, data }, { result });
    let next = m.bootEnv;
    if (result === 'booted' && m.bootEnv) {
      const be = await svc.bootEnvOf(m.bootEnv);
      if (be?.onlyOnce) {
        await modifyDoc(inv, machinesRes, m.uuid, (d) => ({ ...d, bootEnv: 'local' }));
        next = 'local';
        log.info({ machine: m.name, bootEnv: be.name }, 'boot-once bootenv done: machine falls back to local');
      }
    }
    await modifyDoc(inv, machinesRes, m.uuid, (d) => ({ ...d, lastSeen: new Date().toISOString() }));
    bus.emit({ type: `machine.${event}`, machine: m.uuid, data });
    return { machine: m.uuid, boot: b.id, bootEnv: next };
  };
  app.post<{ Params: { id: string } }>(`${API}/machines/:id/callback`, async (req) => {
    const body = (req.body ?? {}) as { event?: unknown; data?: unknown };
    const event = typeof body.event === 'string' && /^[a-z][a-z0-9_-]{0,31}$/.test(body.event) ? body.event : undefined;
    if (!event)
      throw new HttpProblem(400, 'callback needs "event": a short lower-case word like "booted"', [
        { path: 'event', message: 'required' },
      ]);
    return callback(
      req,
      event,
      typeof body.data === 'object' && body.data ? (body.data as Record<string, unknown>) : {},
    );
  });
  // busybox wget in an initrd can only GET: /callback?event=booted&ip=...
  app.get<{ Params: { id: string }; Querystring: Record<string, string> }>(
    `${API}/machines/:id/callback`,
    async (req) => {
      const { event = 'booted', token: _t, ...data } = req.query;
      if (!/^[a-z][a-z0-9_-]{0,31}$/.test(event))
        throw new HttpProblem(400, 'event must be a short lower-case word', [{ path: 'event', message: 'bad event' }]);
      return callback(req, event, data);
    },
  );

  // PUT from scripts; POST too, since busybox wget in the discovery image can only POST.
  const inventoryRoute = async (req: FastifyRequest<{ Params: { id: string } }>) => {
    const body = req.body as Record<string, unknown> | undefined;
    if (!body || typeof body !== 'object' || Array.isArray(body))
      throw new HttpProblem(400, 'inventory must be a JSON object');
    if (JSON.stringify(body).length > 256 * 1024) throw new HttpProblem(413, 'inventory is larger than 256 KiB');
    const nicMacs: string[] = [];
    for (const n of Array.isArray(body.nics) ? body.nics : []) {
      const r = Mac.safeParse((n as { mac?: unknown })?.mac);
      if (r.success) nicMacs.push(r.data);
    }
    const uuid =
      typeof body.smbiosUuid === 'string' && !zeroUuid.test(body.smbiosUuid)
        ? body.smbiosUuid.toLowerCase()
        : undefined;
    const s = await modifyDoc(inv, machinesRes, req.params.id, (d) => {
      const macs = new Set((d.macs as string[]) ?? []);
      for (const mac of nicMacs) macs.add(mac);
      return {
        ...d,
        macs: [...macs],
        ...(typeof body.arch === 'string' ? { arch: archOf(body.arch) } : {}),
        inventory: { ...(d.inventory as object), ...body, ...(uuid ? { smbiosUuid: uuid } : {}) },
        lastSeen: new Date().toISOString(),
      };
    });
    await boots.record(s.key, { kind: 'callback', detail: `inventory reported (${nicMacs.length} NICs)` });
    bus.emit({ type: 'machine.inventory', machine: s.key });
    return s.doc;
  };

  app.put(`${API}/machines/:id/inventory`, inventoryRoute);
  app.post(`${API}/machines/:id/inventory`, inventoryRoute);

  app.get<{ Params: { id: string } }>(`${API}/machines/:id/boots`, async (req) => {
    const key = (await store.get('machines', req.params.id))
      ? req.params.id
      : await machinesRes.resolveKey!(store, req.params.id);
    if (!key) throw new HttpProblem(404, `machine '${req.params.id}' does not exist`);
    return boots.list(key);
  });
}

function archOf(buildarch: string | undefined): string | undefined {
  if (!buildarch) return undefined;
  return (
    // iPXE's ${buildarch} (i386 for a BIOS ROM even on 64-bit hardware) or the OS's `uname -m` from discovery.
    ({ x86_64: 'amd64', i386: 'x86', arm64: 'arm64', aarch64: 'arm64', arm32: 'arm' } as Record<string, string>)[
      buildarch
    ] ?? buildarch.slice(0, 32)
  );
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
