/**
 * The Redfish driver (DMTF DSP0266), no SDK: the ComputerSystem found from the service root, its PowerState, the
 * Reset action with a reset type the system itself lists, and Boot.BootSourceOverride PATCHed with If-Match and
 * read back, because BMCs that answer 200 and keep nothing are common. Session auth (a token from
 * SessionService/Sessions, deleted by close()) with a fall-back to Basic when the BMC has no session service.
 * Requests go through node:http(s) with an Agent per driver: `insecureTLS` (self-signed BMC certificates) then
 * applies to this BMC only, never to the process.
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import {
  type BmcSettings,
  type BootOverride,
  type PowerAction,
  type PowerDriver,
  PowerError,
  type PowerState,
} from './driver.js';

export interface RedfishOptions {
  /** One HTTP request's limit. */
  callTimeoutMs?: number;
  /** How long a reset may take to show in PowerState. */
  verifyTimeoutMs?: number;
  pollMs?: number;
  /** 'session' (default: falls back to basic when the BMC has no SessionService) or 'basic'. */
  auth?: 'session' | 'basic';
}

type Reply = { status: number; headers: Record<string, string | string[] | undefined>; body: any };

const TARGET: Record<BootOverride['device'], string> = { pxe: 'Pxe', disk: 'Hdd', none: 'None' };

/** The base URL of a BMC: `address` may be a URL (http://... for the emulator) or a host, then https. */
export function baseUrl(b: BmcSettings): URL {
  if (/^https?:\/\//i.test(b.address)) {
    const u = new URL(b.address);
    if (b.port) u.port = String(b.port);
    return u;
  }
  const host = b.address.includes(':') && !b.address.startsWith('[') ? `[${b.address}]` : b.address;
  return new URL(`https://${host}${b.port ? `:${b.port}` : ''}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A Redfish error body's own words (error.message and the first extended info), else the status. */
function said(r: Reply): string {
  const e = r.body?.error;
  const ext = e?.['@Message.ExtendedInfo']?.[0]?.Message;
  return [e?.message, ext].filter((x) => typeof x === 'string').join('; ') || `HTTP ${r.status}`;
}

export class RedfishDriver implements PowerDriver {
  private readonly base: URL;
  private readonly agent: HttpAgent;
  private readonly callTimeoutMs: number;
  private readonly verifyTimeoutMs: number;
  private readonly pollMs: number;
  private auth: 'session' | 'basic';
  private token?: string;
  private sessionUri?: string;
  private systemUri?: string;

  constructor(
    private readonly bmc: BmcSettings,
    o: RedfishOptions = {},
  ) {
    this.base = baseUrl(bmc);
    this.agent =
      this.base.protocol === 'https:'
        ? new HttpsAgent({ keepAlive: true, maxSockets: 2, rejectUnauthorized: !bmc.insecureTLS })
        : new HttpAgent({ keepAlive: true, maxSockets: 2 });
    this.callTimeoutMs = o.callTimeoutMs ?? 15_000;
    this.verifyTimeoutMs = o.verifyTimeoutMs ?? 30_000;
    this.pollMs = o.pollMs ?? 500;
    this.auth = o.auth ?? 'session';
  }

  /** One HTTP exchange; network and time failures become PowerErrors. */
  private send(
    method: string,
    path: string,
    signal: AbortSignal,
    body?: unknown,
    headers: Record<string, string> = {},
  ) {
    const url = new URL(path, this.base);
    const what = `${method} ${url.pathname} (${this.base.host})`;
    const text = body === undefined ? undefined : JSON.stringify(body);
    const h: Record<string, string> = { Accept: 'application/json', 'OData-Version': '4.0', ...headers };
    if (text !== undefined) h['Content-Type'] = 'application/json';
    if (this.token) h['X-Auth-Token'] = this.token;
    else if (this.auth === 'basic' && this.bmc.username !== undefined)
      h.Authorization = `Basic ${Buffer.from(`${this.bmc.username}:${this.bmc.password ?? ''}`).toString('base64')}`;
    const limit = AbortSignal.any([signal, AbortSignal.timeout(this.callTimeoutMs)]);
    const req = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<Reply>((resolve, reject) => {
      if (limit.aborted) return reject(new PowerError('timeout', `${what}: aborted before it started`));
      const r = req(url, { method, headers: h, agent: this.agent, signal: limit }, (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          if (data.length < 1 << 20) data += d;
        });
        res.on('end', () => {
          let json: any;
          try {
            json = data ? JSON.parse(data) : undefined;
          } catch {
            json = undefined; // a BMC's HTML error page: the status says enough
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: json });
        });
        res.on('error', (e) => reject(new PowerError('failed', `${what}: ${e.message}`)));
      });
      r.on('error', (e: NodeJS.ErrnoException) => {
        if (limit.aborted) return reject(new PowerError('timeout', `${what}: no answer within the call's time`));
        if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/i.test(e.code ?? ''))
          return reject(
            new PowerError('failed', `${what}: TLS: ${e.message} (a self-signed BMC needs insecureTLS on this BMC)`),
          );
        if (/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|ECONNRESET|EAI_AGAIN/.test(e.code ?? ''))
          return reject(new PowerError('unreachable', `${what}: ${e.code}`));
        reject(new PowerError('failed', `${what}: ${e.message}`));
      });
      r.end(text);
    });
  }

  /** Opens a session (once per driver); a BMC without a session service is spoken to with Basic auth. */
  private async login(signal: AbortSignal): Promise<void> {
    if (this.auth !== 'session' || this.token) return;
    const root = await this.send('GET', '/redfish/v1/', signal);
    const path = root.body?.Links?.Sessions?.['@odata.id'] ?? '/redfish/v1/SessionService/Sessions';
    const r = await this.send('POST', path, signal, { UserName: this.bmc.username, Password: this.bmc.password });
    const token = r.headers['x-auth-token'];
    if ((r.status === 201 || r.status === 200) && typeof token === 'string') {
      this.token = token;
      const loc = r.headers.location;
      this.sessionUri = typeof loc === 'string' ? new URL(loc, this.base).pathname : r.body?.['@odata.id'];
      return;
    }
    if (r.status === 401 || r.status === 403)
      throw new PowerError('auth', `Redfish login at ${this.base.host} refused: ${said(r)}`);
    this.auth = 'basic';
  }

  /** An authenticated call: a 401 on a session (expired) logs in again once; the status maps to a PowerError. */
  private async call(method: string, path: string, signal: AbortSignal, body?: unknown, h?: Record<string, string>) {
    await this.login(signal);
    let r = await this.send(method, path, signal, body, h);
    if (r.status === 401 && this.token) {
      this.token = undefined;
      await this.login(signal);
      r = await this.send(method, path, signal, body, h);
    }
    if (r.status >= 200 && r.status < 300) return r;
    const what = `${method} ${path} at ${this.base.host}`;
    if (r.status === 401) throw new PowerError('auth', `${what}: the BMC refused the credentials (${said(r)})`);
    if (r.status === 412) return r; // the caller re-reads and retries
    if (r.status >= 400 && r.status < 500) throw new PowerError('refused', `${what}: ${said(r)}`);
    throw new PowerError('failed', `${what}: ${said(r)}`);
  }

  /** The ComputerSystem's path: bmc.systemId when the BMC has several, else its only member. */
  private async system(signal: AbortSignal): Promise<string> {
    if (this.systemUri) return this.systemUri;
    const root = await this.call('GET', '/redfish/v1/', signal);
    const col = await this.call('GET', root.body?.Systems?.['@odata.id'] ?? '/redfish/v1/Systems', signal);
    const members: string[] = (col.body?.Members ?? []).map((m: any) => m?.['@odata.id']).filter(Boolean);
    const want = this.bmc.systemId;
    const found = want ? members.find((m) => m === want || m.replace(/\/$/, '').endsWith(`/${want}`)) : members[0];
    if (!found || (!want && members.length > 1))
      throw new PowerError(
        'failed',
        want
          ? `the BMC at ${this.base.host} has no system ${want} (it lists ${members.join(', ')})`
          : `the BMC at ${this.base.host} lists ${members.length} systems: set the machine's bmc.systemId`,
      );
    this.systemUri = found;
    return found;
  }

  private async read(signal: AbortSignal): Promise<{ body: any; etag?: string }> {
    const r = await this.call('GET', await this.system(signal), signal);
    const etag = typeof r.headers.etag === 'string' ? r.headers.etag : r.body?.['@odata.etag'];
    return { body: r.body ?? {}, etag };
  }

  async status(signal: AbortSignal): Promise<PowerState> {
    const s = (await this.read(signal)).body.PowerState;
    return s === 'On' ? 'on' : s === 'Off' ? 'off' : 'unknown';
  }

  private async reset(sys: any, wanted: string[], signal: AbortSignal): Promise<void> {
    const action = sys.Actions?.['#ComputerSystem.Reset'];
    if (!action?.target)
      throw new PowerError('unsupported', `the system at ${this.base.host} has no ComputerSystem.Reset action`);
    const allowed: string[] | undefined = action['ResetType@Redfish.AllowableValues'];
    const type = allowed ? wanted.find((t) => allowed.includes(t)) : wanted[0];
    if (!type)
      throw new PowerError('unsupported', `the system lists reset types ${allowed?.join(', ')}, none of ${wanted}`);
    await this.call('POST', action.target, signal, { ResetType: type });
  }

  private async waitFor(want: PowerState, signal: AbortSignal): Promise<void> {
    const until = Date.now() + this.verifyTimeoutMs;
    for (;;) {
      const now = await this.status(signal);
      if (now === want) return;
      if (Date.now() >= until || signal.aborted)
        throw new PowerError('failed', `the BMC at ${this.base.host} accepted power ${want} but reports ${now}`);
      await sleep(this.pollMs);
    }
  }

  async power(action: PowerAction, signal: AbortSignal): Promise<void> {
    const sys = (await this.read(signal)).body;
    const on = sys.PowerState !== 'Off';
    if (action === 'on') {
      if (!on) await this.reset(sys, ['On', 'ForceOn'], signal);
      return this.waitFor('on', signal);
    }
    if (action === 'off') {
      if (on) await this.reset(sys, ['ForceOff', 'GracefulShutdown'], signal);
      return this.waitFor('off', signal);
    }
    if (!on) {
      await this.reset(sys, ['On', 'ForceOn'], signal);
      return this.waitFor('on', signal);
    }
    const allowed: string[] = sys.Actions?.['#ComputerSystem.Reset']?.['ResetType@Redfish.AllowableValues'] ?? [];
    const direct = action === 'reset' ? ['ForceRestart', 'GracefulRestart'] : ['PowerCycle'];
    if (direct.some((t) => allowed.includes(t))) {
      await this.reset(sys, direct, signal);
    } else {
      // No such reset type listed: off, verified, then on.
      await this.reset(sys, ['ForceOff', 'GracefulShutdown'], signal);
      await this.waitFor('off', signal);
      await this.reset(sys, ['On', 'ForceOn'], signal);
    }
    return this.waitFor('on', signal);
  }

  async setBootDevice(o: BootOverride, signal: AbortSignal): Promise<void> {
    const enabled = o.device === 'none' ? 'Disabled' : o.persistent ? 'Continuous' : 'Once';
    const boot: Record<string, string> = {
      BootSourceOverrideEnabled: enabled,
      BootSourceOverrideTarget: TARGET[o.device],
      BootSourceOverrideMode: o.uefi ? 'UEFI' : 'Legacy',
    };
    let cur = await this.read(signal);
    // A system that does not report the mode (legacy-only BMCs) is not sent one.
    if (cur.body.Boot?.BootSourceOverrideMode === undefined) delete boot.BootSourceOverrideMode;
    const path = await this.system(signal);
    for (let attempt = 0; ; attempt++) {
      const r = await this.call('PATCH', path, signal, { Boot: boot }, cur.etag ? { 'If-Match': cur.etag } : {});
      if (r.status !== 412) break;
      if (attempt > 0) throw new PowerError('refused', `the BMC at ${this.base.host} refused If-Match twice`);
      cur = await this.read(signal); // someone changed it between our read and PATCH: read and try once more
    }
    const got = (await this.read(signal)).body.Boot ?? {};
    const wrong = Object.entries(boot).filter(([k, v]) => got[k] !== v);
    if (wrong.length)
      throw new PowerError(
        'override-ignored',
        `the BMC at ${this.base.host} answered the boot override and kept ${wrong
          .map(([k]) => `${k}=${got[k]}`)
          .join(', ')} (asked ${wrong.map(([k, v]) => `${k}=${v}`).join(', ')})`,
      );
  }

  /** Deletes the session, if one was opened, and the connections. */
  async close(): Promise<void> {
    try {
      if (this.token && this.sessionUri) await this.send('DELETE', this.sessionUri, AbortSignal.timeout(5000));
    } catch {
      // the session expires on the BMC anyway
    } finally {
      this.token = undefined;
      this.agent.destroy();
    }
  }
}
