import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminApp } from '../helpers/boot-service.js';

let app: FastifyInstance;
let token: string;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ app, token, close } = await adminApp('resonly'));
});
afterAll(() => close());

async function call(method: 'POST' | 'GET', url: string, body?: unknown) {
  const r = await app.inject({
    method,
    url: `/api/v1${url}`,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { payload: JSON.stringify(body) } : {}),
  });
  return { status: r.statusCode, body: r.json() as any };
}

describe('subnets without a dynamic range (API)', () => {
  it('creates one (201), reads it back without a range, and takes a reservation in it', async () => {
    const c = await call('POST', '/subnets', { name: 'static', subnet: '10.55.0.0/24' });
    expect(c.status).toBe(201);
    const g = await call('GET', '/subnets/static');
    expect(g.status).toBe(200);
    expect(g.body.activeStart).toBeUndefined();
    expect(g.body.activeEnd).toBeUndefined();
    const o = await call('POST', '/subnets', { name: 'resonly', subnet: '10.56.0.0/24', onlyReservations: true });
    expect(o.status).toBe(201);
    const r = await call('POST', '/reservations', {
      address: '10.55.0.50',
      mac: '52:54:00:12:34:56',
      subnet: 'static',
    });
    expect(r.status).toBe(201);
    // Another subnet with a range next to it: no overlap to report.
    const n = await call('POST', '/subnets', {
      name: 'dyn',
      subnet: '10.57.0.0/24',
      activeStart: '10.57.0.10',
      activeEnd: '10.57.0.20',
    });
    expect(n.status).toBe(201);
  });

  it('refuses half a range with 400 and the field to fix', async () => {
    const h = await call('POST', '/subnets', { name: 'half', subnet: '10.58.0.0/24', activeStart: '10.58.0.10' });
    expect(h.status).toBe(400);
    expect(h.body.errors).toContainEqual({
      path: 'activeEnd',
      message:
        'set both activeStart and activeEnd for a dynamic range, or neither for a subnet that serves reservations only',
    });
  });
});
