import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { HttpProblem } from './problem.js';

/** One write through the API: who (token name, id, role), what (method, route, resource, status), when, where. */
export type AuditEntry = {
  at: string;
  who: string;
  tokenId: string;
  role: string;
  method: string;
  route: string;
  id?: string;
  status: number;
  ip: string;
};

export type AuditOptions = {
  /** Entries kept; the oldest beyond it are deleted (checked every `pruneEvery` entries and at start). */
  max?: number;
  pruneEvery?: number;
};

export const AUDIT_MAX = 100_000;

/**
 * Records writes through the store's batched queue (one transaction per event-loop turn, off the request's
 * path: the reply never waits for it) and keeps the log bounded.
 */
export function auditLog(store: Store, log: Logger, opts: AuditOptions = {}) {
  const max = opts.max ?? AUDIT_MAX;
  const every = opts.pruneEvery ?? Math.max(1, Math.min(1000, Math.floor(max / 10)));
  // Time-ordered keys, unique across restarts: the ms timestamp, then a per-process prefix and a counter.
  const proc = randomBytes(3).toString('hex');
  let seq = 0;
  let sinceCheck = 0;
  let pruning: Promise<void> | undefined;

  const prune = async () => {
    const { total } = await store.list('audit', { limit: 1 });
    let excess = total - max;
    while (excess > 0) {
      const { items } = await store.list('audit', { sort: { field: 'at' }, limit: Math.min(excess, 1000) });
      if (items.length === 0) break;
      await Promise.all(items.map((i) => store.putBatched('audit', i.key, null)));
      excess -= items.length;
    }
  };
  const maybePrune = () => {
    if (pruning) return;
    pruning = prune()
      .catch((err) => log.warn({ err }, 'audit log prune failed; retried after the next writes'))
      .finally(() => {
        pruning = undefined;
      });
  };

  return {
    record(e: AuditEntry): void {
      const key = `${e.at}-${proc}-${(seq++).toString(36).padStart(7, '0')}`;
      store
        .putBatched('audit', key, e)
        .catch((err) => log.warn({ err, entry: e }, 'audit entry not written (the log line above has it)'));
      if (++sinceCheck >= every) {
        sinceCheck = 0;
        maybePrune();
      }
    },
    prune: () => {
      maybePrune();
      return pruning ?? Promise.resolve();
    },
  };
}
export type AuditLog = ReturnType<typeof auditLog>;

/**
 * The root's onResponse hook (so it sees routes behind the fail-closed net too): every write (a method other
 * than GET/HEAD/OPTIONS) that reached a route with a valid token is recorded, refused (403, 4xx) or not. Requests
 * without a valid token are not: anyone could flood them and push real entries out of the bounded log; the
 * request log line still has them.
 */
export function auditHook(audit: AuditLog) {
  // Callback style: reads (nearly every request) pass without a promise.
  return (req: FastifyRequest, reply: FastifyReply, done: () => void) => {
    if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS') record(audit, req, reply);
    done();
  };
}

/** The audit entry of one write made with a valid token. */
function record(audit: AuditLog, req: FastifyRequest, reply: FastifyReply) {
  const p = req.principal;
  if (!p) return;
  const params = (req.params ?? {}) as { id?: string; '*'?: string };
  const id = params.id ?? params['*'];
  audit.record({
    at: new Date().toISOString(),
    who: p.name,
    tokenId: p.id,
    role: p.role,
    method: req.method,
    route: req.routeOptions.url ?? req.url.split('?')[0]!,
    ...(id !== undefined ? { id: id.slice(0, 256) } : {}),
    status: reply.statusCode,
    ip: req.ip,
  });
}

/** GET /api/v1/audit (admin): newest first; ?who=<token name>, ?since=<ISO time>, ?limit= (<= 1000), ?offset=. */
export function registerAuditRoutes(api: FastifyInstance, deps: { store: Store }) {
  api.get('/audit', { config: { adminOnly: true } }, async (req, reply) => {
    const q = req.query as Record<string, string>;
    for (const k of Object.keys(q)) {
      if (!['who', 'since', 'limit', 'offset'].includes(k))
        throw new HttpProblem(400, `cannot filter the audit log by '${k}': use who, since, limit, offset`, [
          { path: k, message: 'unknown field' },
        ]);
    }
    const int = (k: string, dflt: number, max: number) => {
      if (q[k] === undefined) return dflt;
      if (!/^\d+$/.test(q[k]) || Number(q[k]) > max)
        throw new HttpProblem(400, `${k} must be an integer from 0 to ${max}`, [{ path: k, message: 'bad integer' }]);
      return Number(q[k]);
    };
    let since: string | undefined;
    if (q.since !== undefined) {
      const t = Date.parse(q.since);
      if (!Number.isFinite(t))
        throw new HttpProblem(400, 'since must be a time like 2026-01-31T12:00:00Z', [
          { path: 'since', message: 'not a time' },
        ]);
      since = new Date(t).toISOString();
    }
    const { items, total } = await deps.store.list('audit', {
      filters: q.who !== undefined ? [{ field: 'who', value: q.who }] : [],
      sort: { field: 'at', desc: true },
      limit: int('limit', 100, 1000),
      offset: int('offset', 0, Number.MAX_SAFE_INTEGER),
    });
    // Newest first, so the entries at or after `since` are a prefix: the page ends at the first older one.
    const page = since ? items.filter((i) => (i.doc as AuditEntry).at >= since!) : items;
    if (!since) reply.header('x-total-count', String(total));
    reply.type('application/json; charset=utf-8');
    return `[${page.map((i) => i.json).join(',')}]`;
  });
}
