import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  findTokenById,
  hashToken,
  MIN_TOKEN_LENGTH,
  newToken,
  ROLES,
  revokeToken,
  type TokenDoc,
  tokenId,
  tokenStored,
} from '../inventory/tokens.js';
import { ConflictError, type Store } from '../store/store.js';
import { API } from './api-prefix.js';
import { HttpProblem, validationProblem } from './problem.js';

const MAX_EXPIRY_S = 10 * 366 * 86_400;
const NewToken = z
  .strictObject({
    name: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[\w.@ ()-]+$/, 'letters, digits, space and ._@()- only'),
    role: z.enum(ROLES),
    machine: z.uuid().optional(),
    expiresIn: z.number().int().min(60).max(MAX_EXPIRY_S).optional(),
    expiresAt: z.iso.datetime({ offset: true }).optional(),
    token: z.string().min(MIN_TOKEN_LENGTH).max(512).regex(/^\S+$/, 'no spaces').optional(),
  })
  .superRefine((b, ctx) => {
    if (b.role === 'machine' && !b.machine)
      ctx.addIssue({ code: 'custom', path: ['machine'], message: 'a machine token needs the machine uuid' });
    if (b.role !== 'machine' && b.machine)
      ctx.addIssue({ code: 'custom', path: ['machine'], message: 'only a machine token names a machine' });
    if (b.expiresIn !== undefined && b.expiresAt !== undefined)
      ctx.addIssue({ code: 'custom', path: ['expiresAt'], message: 'give expiresIn or expiresAt, not both' });
    if (b.expiresAt !== undefined && !(Date.parse(b.expiresAt) > Date.now()))
      ctx.addIssue({ code: 'custom', path: ['expiresAt'], message: 'is in the past' });
  });

export { NewToken };

/** What the API shows of a token: never the secret; the id is a prefix of its hash. */
export function tokenView(hash: string, d: TokenDoc) {
  return {
    id: tokenId(hash),
    name: d.name,
    role: d.role,
    ...(d.machine ? { machine: d.machine } : {}),
    createdAt: d.createdAt,
    ...(d.expiresAt ? { expiresAt: d.expiresAt } : {}),
    ...(d.lastUsedAt ? { lastUsedAt: d.lastUsedAt } : {}),
    ...(d.source ? { source: d.source } : {}),
  };
}

const idOk = (id: string) => {
  if (!/^[0-9a-f]{16,64}$/.test(id))
    throw new HttpProblem(400, 'a token id is 16 hex digits (from GET /api/v1/tokens)', [
      { path: 'id', message: 'not a token id' },
    ]);
  return id;
};

/**
 * POST/GET/DELETE /api/v1/tokens (admin only): tokens with roles, expiry and last use, revocable at once. Declared
 * relative to the API scope's prefix; who may call what is auth.ts.
 */
export function registerTokenRoutes(api: FastifyInstance, deps: { store: Store }) {
  const { store } = deps;
  const admin = { config: { adminOnly: true } };

  api.post('/tokens', admin, async (req, reply) => {
    const parsed = NewToken.safeParse(req.body ?? {});
    if (!parsed.success) throw validationProblem(parsed.error, 'token');
    const b = parsed.data;
    if (b.machine && !(await store.get('machines', b.machine))) {
      throw new HttpProblem(400, `token: machine: machine '${b.machine}' does not exist`, [
        { path: 'machine', message: 'no such machine' },
      ]);
    }
    const secret = b.token ?? newToken();
    const hash = hashToken(secret);
    const now = new Date();
    const expiresAt =
      b.expiresAt !== undefined
        ? new Date(b.expiresAt).toISOString()
        : b.expiresIn !== undefined
          ? new Date(now.getTime() + b.expiresIn * 1000).toISOString()
          : undefined;
    const doc: TokenDoc = {
      name: b.name,
      role: b.role,
      ...(b.machine ? { machine: b.machine } : {}),
      createdAt: now.toISOString(),
      ...(expiresAt ? { expiresAt } : {}),
      source: 'api',
    };
    try {
      // Names are unique among API tokens, so the audit log's "who" names one of them.
      await store.create('tokens', hash, doc, [{ field: 'name', value: b.name }]);
      tokenStored(store, hash);
    } catch (err) {
      if (err instanceof ConflictError && err.field === 'key')
        throw new HttpProblem(409, 'token: that token value is already in use: choose another', [
          { path: 'token', message: 'in use' },
        ]);
      throw err;
    }
    return reply
      .code(201)
      .header('location', `${API}/tokens/${tokenId(hash)}`)
      .header('cache-control', 'no-store')
      .send({ ...tokenView(hash, doc), token: secret });
  });

  api.get('/tokens', admin, async (req, reply) => {
    const q = req.query as Record<string, string>;
    for (const k of Object.keys(q)) {
      if (!['role', 'limit', 'offset'].includes(k))
        throw new HttpProblem(400, `cannot filter tokens by '${k}': use role, limit, offset`, [
          { path: k, message: 'unknown field' },
        ]);
    }
    if (q.role !== undefined && !(ROLES as readonly string[]).includes(q.role))
      throw new HttpProblem(400, `role must be one of ${ROLES.join(', ')}`, [{ path: 'role', message: 'bad role' }]);
    const int = (k: string, dflt: number, max: number) => {
      if (q[k] === undefined) return dflt;
      if (!/^\d+$/.test(q[k]) || Number(q[k]) > max)
        throw new HttpProblem(400, `${k} must be an integer from 0 to ${max}`, [{ path: k, message: 'bad integer' }]);
      return Number(q[k]);
    };
    const { items, total } = await store.list('tokens', {
      filters: q.role ? [{ field: 'role', value: q.role }] : [],
      sort: { field: 'createdAt', desc: true },
      limit: int('limit', 1000, 10_000),
      offset: int('offset', 0, Number.MAX_SAFE_INTEGER),
    });
    reply.header('x-total-count', String(total));
    return items.map((s) => tokenView(s.key, s.doc as TokenDoc));
  });

  api.get<{ Params: { id: string } }>('/tokens/:id', admin, async (req) => {
    const t = await findTokenById(store, idOk(req.params.id));
    if (!t) throw new HttpProblem(404, `token '${req.params.id}' does not exist`);
    return tokenView(t.hash, t.doc);
  });

  api.delete<{ Params: { id: string } }>('/tokens/:id', admin, async (req, reply) => {
    const t = await findTokenById(store, idOk(req.params.id));
    if (!t) throw new HttpProblem(404, `token '${req.params.id}' does not exist`);
    await revokeToken(store, t.hash);
    return reply.code(204).send();
  });
}
