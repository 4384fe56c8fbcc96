import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../inventory/tokens.js';
import { requestToken } from '../provision/trust.js';
import { API } from './api-prefix.js';
import { HttpProblem } from './problem.js';

/**
 * Where the API's authentication lives. It is decided by the fastify scope a route is registered in, never by
 * the URL's text: the router decodes (`/%61pi/v1/machines` is `/api/v1/machines`), so a string test on req.url
 * can be walked around. `tokenScope` is the API's scope (its onRequest hook checks the bearer token and the
 * token's role); `publicScope` holds the few API routes that need none; `failClosed` is the net for a route
 * under the API prefix registered anywhere else, which then needs a token too.
 */
declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** A machine's own token may use this route when the route's `:id` is that machine's uuid. */
    machineToken?: boolean;
    /** An operator token may write here (machines and what hangs off them). */
    operator?: boolean;
    /** Admin only, even to read (tokens, audit). */
    adminOnly?: boolean;
    /** Set on every route of a token scope (`tokenScope`): its own hook authenticated the request. */
    apiScope?: boolean;
    /** Set on every route of the public API scope (`publicScope`): no token. */
    publicApi?: boolean;
  }
}

/**
 * Who may do what. Reads are GET and HEAD; every other method is a write. Routes say what they allow through
 * their config (above); a write route that says nothing is admin-only, so a new route fails closed.
 *
 *   role      reads                                         writes
 *   admin     everything                                    everything
 *   operator  everything but tokens and audit;              routes marked `operator`: machines (create,
 *             secure param values masked                    assign bootEnv, params, delete), their callbacks
 *                                                           and inventory, reservations, leases
 *   viewer    as operator                                   nothing
 *   machine   routes marked `machineToken` whose :id is its own uuid (its record, callback, inventory)
 */
export function refusal(p: Principal, req: FastifyRequest): string | undefined {
  if (p.role === 'admin') return undefined;
  const cfg = req.routeOptions.config ?? {};
  const read = req.method === 'GET' || req.method === 'HEAD';
  if (p.role === 'machine') {
    const id = (req.params as { id?: string } | undefined)?.id;
    return cfg.machineToken && id !== undefined && id === p.machine
      ? undefined
      : 'a machine token may only reach its own machine';
  }
  if (cfg.adminOnly) return `this route needs an admin token (this one is ${p.role})`;
  if (read) return undefined;
  if (p.role === 'operator' && (cfg.operator || cfg.machineToken)) return undefined;
  return `a ${p.role} token may not ${req.method} here: ${
    p.role === 'viewer' ? 'it only reads' : 'operators write machines, reservations and leases'
  }`;
}

/** Whether this principal sees secure param values (admin, and a machine its own). */
export const seesSecrets = (p: Principal | undefined) => !p || p.role === 'admin' || p.role === 'machine';

const unauthorized = (detail: string, error?: string) =>
  new HttpProblem(401, detail, undefined, {
    'www-authenticate': `Bearer realm="plinth"${error ? `, error="${error}"` : ''}`,
  });

/**
 * Token -> principal (`tokenChecker`); `cached` answers at once when the answer is known (a principal, or null for a
 * refused token) and undefined when the store must be asked.
 */
export type TokenCheck = ((token: string) => Promise<Principal | null>) & {
  cached?(token: string): Principal | null | undefined;
};

/** A callback-style onRequest hook: a known token (nearly every request) is decided without a promise. */
export type Authenticate = (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => void;

/** The principal's verdict on this request: nothing when it may go on, else the problem to answer. */
function admit(req: FastifyRequest, p: Principal | null): HttpProblem | undefined {
  if (!p) return unauthorized('the bearer token is not valid (or has expired)', 'invalid_token');
  req.principal = p;
  const why = refusal(p, req);
  return why ? new HttpProblem(403, why) : undefined;
}

/** The onRequest hook of a token scope: a bearer token, then the role check of `refusal`. */
export function authenticate(check: TokenCheck): Authenticate {
  return (req, _reply, done) => {
    // A booted machine's initrd may only manage a GET with the token in the query (busybox wget): the query
    // counts only on the routes a machine token may use.
    const token = requestToken(
      req.headers.authorization,
      req.routeOptions.config?.machineToken ? req.query : undefined,
    );
    if (!token) {
      return done(
        unauthorized('this route needs "Authorization: Bearer <token>"; the admin token is in <data-dir>/admin.token'),
      );
    }
    const known = check.cached?.(token);
    if (known !== undefined) return done(admit(req, known));
    check(token).then((p) => done(admit(req, p)), done);
  };
}

type Routes = (scope: FastifyInstance) => void | Promise<void>;

const mark = (scope: FastifyInstance, flag: 'apiScope' | 'publicApi') =>
  scope.addHook('onRoute', (r) => {
    r.config = { ...(r.config ?? {}), [flag]: true };
  });

/**
 * A scope whose every route needs a token the route allows: the API (registered with `{ prefix: API }`), and
 * /metrics unless it is public. Routes inside are declared relative to the scope's prefix.
 */
export function tokenScope(auth: Authenticate, routes: Routes): FastifyPluginAsync {
  return async (scope) => {
    mark(scope, 'apiScope');
    scope.addHook('onRequest', auth);
    await routes(scope);
  };
}

/** The API routes that need no token (/api/v1/info, /api/v1/openapi.json): register with `{ prefix: API }`. */
export function publicScope(routes: Routes): FastifyPluginAsync {
  return async (scope) => {
    mark(scope, 'publicApi');
    await routes(scope);
  };
}

/**
 * The root's onRequest net: a route under the API prefix that is in neither scope above (registered on the root
 * or in another plugin) needs a token all the same. Matched route patterns only, never the raw URL.
 */
export function failClosed(auth: Authenticate): Authenticate {
  return (req, reply, done) => {
    const url = req.routeOptions.url;
    if (!url || (url !== API && !url.startsWith(`${API}/`))) return done();
    const cfg = req.routeOptions.config;
    if (cfg?.apiScope || cfg?.publicApi) return done();
    auth(req, reply, done);
  };
}
