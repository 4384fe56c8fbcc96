/**
 * Plinth's Redfish BMC emulator: the part of DMTF Redfish (DSP0266) a provisioning server uses, served over HTTP
 * (or HTTPS with a given pair): the service root, the Systems collection with one ComputerSystem per emulated
 * machine (PowerState, Actions/ComputerSystem.Reset with its allowable values, Boot.BootSourceOverride guarded by
 * an ETag / If-Match), and the SessionService (POST a session, X-Auth-Token, DELETE it); every resource but the
 * service root and session login needs Basic auth or a session token, as on real BMCs. Requests are untrusted:
 * a malformed body is a Redfish error answer, never a crash.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer as httpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as httpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { BOOT_MODES, BOOT_TARGETS, type EmulatedSystem, OVERRIDE_ENABLED, type Override } from './system.js';

export type EmulatorOptions = {
  systems: EmulatedSystem[];
  username: string;
  password: string;
  host?: string;
  port?: number;
  tls?: { key: Buffer | string; cert: Buffer | string };
  /** Refuse a PATCH without If-Match (428), as some BMCs do. */
  requireIfMatch?: boolean;
  log?: (line: string) => void;
};

export type Emulator = { url: string; server: Server; close(): Promise<void>; sessions: Map<string, string> };

const ROOT = '/redfish/v1';
const MAX_BODY = 64 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'OData-Version': '4.0',
    ...(text ? { 'Content-Type': 'application/json; charset=utf-8' } : {}),
    ...headers,
  });
  res.end(text);
}

function redfishError(res: ServerResponse, e: HttpError, headers: Record<string, string> = {}) {
  send(
    res,
    e.status,
    {
      error: {
        code: `Base.1.8.${e.code}`,
        message: e.message,
        '@Message.ExtendedInfo': [{ MessageId: `Base.1.8.${e.code}`, Message: e.message, Severity: 'Warning' }],
      },
    },
    headers,
  );
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, 'GeneralError', 'request body too large');
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    throw new HttpError(400, 'MalformedJSON', 'the request body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new HttpError(400, 'MalformedJSON', 'the request body must be a JSON object');
  return body as Record<string, unknown>;
}

const same = (a: string, b: string) => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

function systemResource(s: EmulatedSystem, power: string) {
  const path = `${ROOT}/Systems/${s.id}`;
  return {
    '@odata.id': path,
    '@odata.type': '#ComputerSystem.v1_13_0.ComputerSystem',
    '@odata.etag': s.etag,
    Id: s.id,
    Name: s.name,
    UUID: s.uuid,
    SystemType: 'Physical',
    Manufacturer: 'Plinth',
    Model: 'Redfish BMC emulator',
    PowerState: power,
    Status: { State: 'Enabled', Health: 'OK' },
    Boot: {
      BootSourceOverrideEnabled: s.override.enabled,
      BootSourceOverrideTarget: s.override.target,
      BootSourceOverrideMode: s.override.mode,
      'BootSourceOverrideTarget@Redfish.AllowableValues': BOOT_TARGETS,
      'BootSourceOverrideEnabled@Redfish.AllowableValues': OVERRIDE_ENABLED,
      'BootSourceOverrideMode@Redfish.AllowableValues': BOOT_MODES,
    },
    Actions: {
      '#ComputerSystem.Reset': {
        target: `${path}/Actions/ComputerSystem.Reset`,
        'ResetType@Redfish.AllowableValues': s.resetTypes,
      },
    },
  };
}

/** Checks a Boot PATCH against the allowable values; returns the fields to set. */
function parseBoot(body: Record<string, unknown>): Partial<Override> {
  const boot = body.Boot;
  if (typeof boot !== 'object' || boot === null || Array.isArray(boot))
    throw new HttpError(400, 'PropertyMissing', 'only Boot can be patched here');
  const b = boot as Record<string, unknown>;
  const out: Partial<Override> = {};
  const pick = <T extends string>(key: string, allowed: readonly T[]): T | undefined => {
    const v = b[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !allowed.includes(v as T))
      throw new HttpError(400, 'PropertyValueNotInList', `${key} ${JSON.stringify(v)} is not one of ${allowed}`);
    return v as T;
  };
  const enabled = pick('BootSourceOverrideEnabled', OVERRIDE_ENABLED);
  const target = pick('BootSourceOverrideTarget', BOOT_TARGETS);
  const mode = pick('BootSourceOverrideMode', BOOT_MODES);
  if (enabled) out.enabled = enabled;
  if (target) out.target = target;
  if (mode) out.mode = mode;
  for (const k of Object.keys(b))
    if (!['BootSourceOverrideEnabled', 'BootSourceOverrideTarget', 'BootSourceOverrideMode'].includes(k))
      throw new HttpError(400, 'PropertyUnknown', `Boot.${k} is not writable here`);
  return out;
}

type Ctx = {
  o: EmulatorOptions;
  /** token -> session id */
  sessions: Map<string, string>;
  byId: Map<string, EmulatedSystem>;
  log: (line: string) => void;
};

function authorized(c: Ctx, req: IncomingMessage): boolean {
  const token = req.headers['x-auth-token'];
  if (typeof token === 'string' && c.sessions.has(token)) return true;
  const m = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return false;
  const [user, ...rest] = Buffer.from(m[1]!, 'base64').toString('utf8').split(':');
  return same(user ?? '', c.o.username) && same(rest.join(':'), c.o.password);
}

/** A ComputerSystem: GET, PATCH (Boot, If-Match guarded), POST its Reset action. */
async function systemRoute(c: Ctx, s: EmulatedSystem, action: boolean, req: IncomingMessage, res: ServerResponse) {
  const m = req.method ?? 'GET';
  if (action) {
    if (m !== 'POST') throw new HttpError(405, 'ActionNotSupported', 'POST the Reset action');
    const body = await readJson(req);
    const type = body.ResetType;
    if (typeof type !== 'string' || !s.resetTypes.includes(type))
      throw new HttpError(400, 'ActionParameterNotSupported', `ResetType ${JSON.stringify(type)} is not allowed`);
    c.log(`${s.id}: reset ${type}`);
    await s.reset(type);
    return send(res, 204);
  }
  if (m === 'GET') return send(res, 200, systemResource(s, await s.backend.power()), { ETag: s.etag });
  if (m === 'PATCH') {
    const match = req.headers['if-match'];
    if (match === undefined && c.o.requireIfMatch)
      throw new HttpError(428, 'PreconditionRequired', 'PATCH needs If-Match with the ETag');
    if (match !== undefined && match !== '*' && !match.split(',').some((t) => t.trim() === s.etag))
      throw new HttpError(412, 'PreconditionFailed', `the ETag is ${s.etag}: re-read the resource`);
    const change = parseBoot(await readJson(req));
    c.log(
      `${s.id}: boot override ${JSON.stringify(change)} If-Match ${match ?? '-'}${s.ignoreOverride ? ' (ignored)' : ''}`,
    );
    s.setOverride(change);
    return send(res, 200, systemResource(s, await s.backend.power()), { ETag: s.etag });
  }
  throw new HttpError(405, 'OperationNotAllowed', `${m} is not allowed here`);
}

async function route(c: Ctx, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { o, sessions, byId, log } = c;
  const url = new URL(req.url ?? '/', 'http://bmc');
  const p = url.pathname.replace(/\/+$/, '') || '/';
  const m = req.method ?? 'GET';
  if (p === '/redfish' && m === 'GET') return send(res, 200, { v1: `${ROOT}/` });
  if (p === ROOT && m === 'GET')
    return send(res, 200, {
      '@odata.id': `${ROOT}/`,
      '@odata.type': '#ServiceRoot.v1_5_0.ServiceRoot',
      Id: 'RootService',
      Name: 'Plinth Redfish BMC emulator',
      RedfishVersion: '1.8.0',
      UUID: '8f3a2c1e-0000-4000-8000-706c696e7468',
      Systems: { '@odata.id': `${ROOT}/Systems` },
      SessionService: { '@odata.id': `${ROOT}/SessionService` },
      Links: { Sessions: { '@odata.id': `${ROOT}/SessionService/Sessions` } },
    });
  if (p === `${ROOT}/SessionService/Sessions` && m === 'POST') {
    const body = await readJson(req);
    if (
      typeof body.UserName !== 'string' ||
      typeof body.Password !== 'string' ||
      !same(body.UserName, o.username) ||
      !same(body.Password, o.password)
    )
      throw new HttpError(401, 'NoValidSession', 'invalid user name or password');
    const id = randomBytes(8).toString('hex');
    const token = randomBytes(24).toString('hex');
    sessions.set(token, id);
    const loc = `${ROOT}/SessionService/Sessions/${id}`;
    log(`session ${id} opened`);
    return send(
      res,
      201,
      { '@odata.id': loc, '@odata.type': '#Session.v1_3_0.Session', Id: id, Name: 'Session', UserName: o.username },
      { 'X-Auth-Token': token, Location: loc },
    );
  }
  if (!authorized(c, req)) throw new HttpError(401, 'InsufficientPrivilege', 'authentication required');
  if (p === `${ROOT}/SessionService` && m === 'GET')
    return send(res, 200, {
      '@odata.id': `${ROOT}/SessionService`,
      '@odata.type': '#SessionService.v1_1_8.SessionService',
      Id: 'SessionService',
      Name: 'Session Service',
      ServiceEnabled: true,
      SessionTimeout: 1800,
      Sessions: { '@odata.id': `${ROOT}/SessionService/Sessions` },
    });
  if (p === `${ROOT}/SessionService/Sessions` && m === 'GET')
    return send(res, 200, {
      '@odata.id': `${ROOT}/SessionService/Sessions`,
      '@odata.type': '#SessionCollection.SessionCollection',
      Name: 'Sessions',
      'Members@odata.count': sessions.size,
      Members: [...sessions.values()].map((id) => ({ '@odata.id': `${ROOT}/SessionService/Sessions/${id}` })),
    });
  const sess = /^\/redfish\/v1\/SessionService\/Sessions\/([0-9a-f]+)$/.exec(p);
  if (sess && m === 'DELETE') {
    for (const [token, id] of sessions)
      if (id === sess[1]) {
        sessions.delete(token);
        log(`session ${id} closed`);
        return send(res, 204);
      }
    throw new HttpError(404, 'ResourceMissingAtURI', `no session ${sess[1]}`);
  }
  if (p === `${ROOT}/Systems` && m === 'GET')
    return send(res, 200, {
      '@odata.id': `${ROOT}/Systems`,
      '@odata.type': '#ComputerSystemCollection.ComputerSystemCollection',
      Name: 'Computer System Collection',
      'Members@odata.count': o.systems.length,
      Members: o.systems.map((s) => ({ '@odata.id': `${ROOT}/Systems/${s.id}` })),
    });
  const sys = /^\/redfish\/v1\/Systems\/([^/]+)(\/Actions\/ComputerSystem\.Reset)?$/.exec(p);
  const s = sys ? byId.get(decodeURIComponent(sys[1]!)) : undefined;
  if (!sys || !s) throw new HttpError(404, 'ResourceMissingAtURI', `${p} is not here`);
  return systemRoute(c, s, sys[2] !== undefined, req, res);
}

export async function startEmulator(o: EmulatorOptions): Promise<Emulator> {
  const sessions = new Map<string, string>();
  const c: Ctx = { o, sessions, byId: new Map(o.systems.map((s) => [s.id, s])), log: o.log ?? (() => {}) };
  const log = c.log;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    route(c, req, res).catch((e: unknown) => {
      const err =
        e instanceof HttpError
          ? e
          : e instanceof URIError || e instanceof TypeError // a malformed path: the client's fault
            ? new HttpError(400, 'MalformedRequest', 'malformed request path')
            : new HttpError(500, 'InternalError', (e as Error).message);
      if (err.status === 500) log(`error on ${req.method} ${req.url}: ${err.message}`);
      if (res.headersSent) return res.end();
      redfishError(res, err, err.status === 401 ? { 'WWW-Authenticate': 'Basic realm="plinth-bmc"' } : {});
    });
  };
  const server = o.tls ? httpsServer({ key: o.tls.key, cert: o.tls.cert }, handler) : httpServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `${o.tls ? 'https' : 'http'}://${host}:${a.port}`,
    server,
    sessions,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      for (const s of o.systems) await s.backend.close();
    },
  };
}
