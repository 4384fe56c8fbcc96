import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { API } from '../../src/http/api-prefix.js';
import { authenticate, failClosed, publicScope, tokenScope } from '../../src/http/auth.js';
import { problemOf, setProblemHandlers } from '../../src/http/errors.js';
import { HttpProblem } from '../../src/http/problem.js';
import type { Principal } from '../../src/inventory/tokens.js';
import { InvalidError, StateConflictError } from '../../src/model/errors.js';
import { BackendError, ConflictError, NotFoundError, PreconditionError } from '../../src/store/store.js';

const principals: Record<string, Principal> = {
  admin: { role: 'admin', name: 'a', id: 'a' },
  viewer: { role: 'viewer', name: 'v', id: 'v' },
};

/** An app laid out like buildApp's, with a token checker that knows two tokens: 'admin' and 'viewer'. */
async function scoped() {
  const app = Fastify();
  setProblemHandlers(app);
  const auth = authenticate(async (t) => principals[t] ?? null);
  app.addHook('onRequest', failClosed(auth));
  await app.register(
    tokenScope(auth, (api) => {
      api.route({ method: ['GET', 'POST'], url: '/thing', handler: async () => 'thing' });
    }),
    {
      prefix: API,
    },
  );
  await app.register(
    publicScope((pub) => {
      pub.get('/hello', async () => 'hello');
    }),
    { prefix: API },
  );
  // Under the prefix but in neither scope: the net must catch both.
  await app.register(async (other) => other.get('/stray', async () => 'stray'), { prefix: API });
  app.get(`${API}/rootstray`, async () => 'rootstray');
  app.get('/open', async () => 'open');
  await app.ready();
  const status = async (method: 'GET' | 'POST', url: string, token?: string) =>
    (await app.inject({ method, url, headers: token ? { authorization: `Bearer ${token}` } : {} })).statusCode;
  return { app, status };
}

describe('the scopes decide authentication (auth.ts)', () => {
  it('a token scope needs a token its role allows; a public scope none; the rest of the prefix fails closed', async () => {
    const { app, status } = await scoped();
    expect(await status('GET', '/api/v1/thing')).toBe(401);
    expect(await status('GET', '/api/v1/thing', 'nonsense')).toBe(401);
    expect(await status('GET', '/api/v1/thing', 'viewer')).toBe(200);
    expect(await status('POST', '/api/v1/thing', 'viewer')).toBe(403);
    expect(await status('POST', '/api/v1/thing', 'admin')).toBe(200);
    expect(await status('GET', '/%61pi/v1/thing')).toBe(401);
    expect(await status('GET', '/api/v1/hello')).toBe(200);
    expect(await status('GET', '/%61pi/v1/hello')).toBe(200);
    for (const url of ['/api/v1/stray', '/%61pi/v1/stray', '/api/v1/rootstray']) {
      expect(await status('GET', url)).toBe(401);
      expect(await status('GET', url, 'viewer')).toBe(200);
    }
    expect(await status('GET', '/open')).toBe(200);
    await app.close();
  });

  it('a route cannot join the public scope by its URL: the same path outside it needs a token', async () => {
    const app = Fastify();
    const auth = authenticate(async () => null);
    app.addHook('onRequest', failClosed(auth));
    await app.register(async (s) => s.get('/info', async () => 'x'), { prefix: API });
    await app.ready();
    expect((await app.inject({ url: '/api/v1/info' })).statusCode).toBe(401);
    await app.close();
  });
});

describe('problemOf: what an error means to the client', () => {
  it('maps each error kind to its status, detail and field errors', () => {
    const fe = [{ path: 'name', message: 'required' }];
    expect(problemOf(new HttpProblem(418, 'teapot', fe, { 'x-a': '1' }))).toEqual({
      status: 418,
      detail: 'teapot',
      errors: fe,
      headers: { 'x-a': '1' },
    });
    expect(problemOf(new InvalidError('machine is not valid', fe))).toEqual({
      status: 400,
      detail: 'machine is not valid: name: required',
      errors: fe,
    });
    expect(problemOf(new StateConflictError('in use', []))).toEqual({
      status: 409,
      detail: 'in use',
      errors: undefined,
    });
    expect(problemOf(new NotFoundError('machines', 'x')).status).toBe(404);
    expect(problemOf(new ConflictError('machines', 'key', 'a1', 'a1')).errors?.[0]?.path).toBe('name');
    expect(problemOf(new PreconditionError('machines', 'x')).status).toBe(412);
    expect(problemOf(new BackendError('disk I/O error')).detail).toBe(
      'disk I/O error: the inventory could not be read or written; nothing was changed',
    );
    expect(problemOf(Object.assign(new Error('body too large'), { statusCode: 413 }))).toEqual({
      status: 413,
      detail: 'body too large',
    });
    // Anything else, a 5xx of fastify's included, says nothing of its cause.
    for (const err of [
      new Error('secret path /var/x'),
      Object.assign(new Error('x'), { statusCode: 502 }),
      'str',
      null,
    ])
      expect(problemOf(err)).toEqual({ status: 500, detail: 'internal error: see the daemon log' });
  });
});
