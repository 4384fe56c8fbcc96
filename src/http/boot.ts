import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { baseUrl, type ServerView } from '../boot/render.js';
import { Mac } from '../model/common.js';
import type { BootService } from '../provision/boot.js';
import type { RenderFailure, RenderOutcome } from '../provision/boot-render.js';
import { requestToken } from '../provision/trust.js';
import type { ServeHooks } from './files-serve.js';
import { sendProblem } from './problem.js';

type Deps = {
  advertiseAddress?: string;
  /** The daemon's boot service (src/provision/boot.ts), shared with TFTP. */
  boot: BootService;
  /** With TLS on: the plain HTTP port boot files are fetched from, whichever listener the script was asked on. */
  plainHttpPort?: () => number | undefined;
  /** With --ipxe-https: the HTTPS port the generic iPXE script chains to. */
  ipxeHttpsPort?: () => number | undefined;
};

/** How each transport-neutral render failure is answered over HTTP. */
const HTTP_STATUS: Record<RenderFailure, number> = {
  'not-found': 404,
  'no-bootenv': 404,
  'no-template': 404,
  'digest-mismatch': 409,
  'render-error': 500,
  // A full render queue is load, not a broken template: 503 so a client retries.
  'render-busy': 503,
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
 * Hooks for /files: the boot service refuses an artifact whose bytes no longer match the digest a bootenv pins,
 * and records each fetch in the requesting machine's boot timeline.
 */
export function fileHooks(deps: Deps): ServeHooks {
  const svc = deps.boot;
  return {
    refuse: (rel) => svc.refuseFile(rel),
    served: (rel, req, status) => svc.fileServed(rel, req.ip, status),
  };
}

/**
 * The boot routes firmware and installers fetch without credentials: parse, ask the boot service
 * (src/provision/boot.ts), reply. The routes a booted machine calls with its token are in machine-api.ts.
 */
export function registerBootRoutes(app: FastifyInstance, deps: Deps) {
  const svc = deps.boot;
  const requester = (req: FastifyRequest) => ({
    source: req.ip,
    token: requestToken(req.headers.authorization, req.query),
    server: serverView(req, deps.advertiseAddress, deps.plainHttpPort),
  });

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
    const r = await svc.ipxeByMac({
      ...requester(req),
      mac: parsed.data,
      asked: req.params.mac,
      arch: q.arch,
      platform: q.platform,
      uuid: q.uuid,
      serial: q.serial,
    });
    return replyFile(reply, 'boot.ipxe', r);
  });

  app.get<{ Params: { uuid: string; '*': string } }>('/machines/:uuid/*', async (req, reply) => {
    const file = req.params['*'];
    const r = await svc.machineFile({ ...requester(req), uuid: req.params.uuid, file, transport: 'http' });
    // No such machine: a problem, even for an iPXE file (there is no machine to tell).
    if (!r.ok && r.reason === 'not-found') return sendProblem(reply, 404, r.detail);
    return replyFile(reply, file, r);
  });
}

function replyFile(reply: FastifyReply, file: string, r: RenderOutcome) {
  if (!r.ok) return ipxeOrProblem(reply, file, HTTP_STATUS[r.reason], r.detail);
  return reply
    .type(file.endsWith('.json') || file.endsWith('.ign') ? 'application/json' : 'text/plain; charset=utf-8')
    .send(r.text);
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
