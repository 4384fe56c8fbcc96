import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminApp } from '../helpers/boot-service.js';

/*
 * What curl scripts send (issue 14): `Content-Type: application/json` on every request, a DELETE with no body
 * included. An empty body under a JSON media type is no body; a route that needs one still refuses it.
 */
let app: FastifyInstance;
let json: Record<string, string>;
let close: () => Promise<void>;

beforeAll(async () => {
  let token: string;
  ({ app, token, close } = await adminApp('json-body'));
  json = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
});
afterAll(() => close());

describe('a JSON content type with no body', () => {
  it('DELETE is accepted (204), as without the header', async () => {
    const made = await app.inject({ method: 'POST', url: '/api/v1/profiles', headers: json, payload: { name: 'p1' } });
    expect(made.statusCode).toBe(201);
    const r = await app.inject({ method: 'DELETE', url: '/api/v1/profiles/p1', headers: json });
    expect(r.statusCode, r.body).toBe(204);
    expect((await app.inject({ url: '/api/v1/profiles/p1', headers: json })).statusCode).toBe(404);
  });

  it('under a +json media type too (merge patch of nothing changes nothing)', async () => {
    await app.inject({ method: 'POST', url: '/api/v1/profiles', headers: json, payload: { name: 'p2' } });
    const r = await app.inject({
      method: 'DELETE',
      url: '/api/v1/profiles/p2',
      headers: { ...json, 'content-type': 'application/merge-patch+json' },
    });
    expect(r.statusCode, r.body).toBe(204);
  });

  it('a POST that needs a body is still refused with problem+json naming it', async () => {
    const r = await app.inject({ method: 'POST', url: '/api/v1/profiles', headers: json });
    expect(r.statusCode).toBe(400);
    expect(r.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(r.json().errors?.[0]?.path).toBe('name');
  });

  it('a body that is not JSON is still a 400', async () => {
    const r = await app.inject({ method: 'POST', url: '/api/v1/profiles', headers: json, payload: '{nope' });
    expect(r.statusCode).toBe(400);
  });
});
