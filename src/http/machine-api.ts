import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type CrudDeps, resolveKey } from '../inventory/crud.js';
import { redactParams, resolveParams } from '../inventory/params.js';
import { inventoryResource } from '../inventory/resources.js';
import type { MachineReports } from '../provision/reports.js';
import { seesSecrets } from './auth.js';
import { HttpProblem } from './problem.js';

/**
 * A machine's own routes beyond its CRUD (resources.ts, shared by every kind): its resolved params, the callback
 * and inventory report a booted machine sends with its own token, and its boot timeline. Registered inside the
 * API's scope (prefix /api/v1, bearer check there); `config.machineToken` marks the routes a machine token may
 * reach for its own machine (`:id`). Parse, call src/provision/reports.ts or src/inventory, reply.
 */
declare module 'fastify' {
  interface FastifyContextConfig {
    /** A machine token may call this route for its own machine (the `:id` param). */
    machineToken?: boolean;
  }
}

export type MachineApiDeps = CrudDeps & {
  reports: MachineReports;
  /** The names of secure params (inventory/params.ts secureNamesCache), to mask them for non-admin tokens. */
  secureNames: () => Promise<Set<string>>;
};

const EVENT = /^[a-z][a-z0-9_-]{0,31}$/;
const MAX_INVENTORY = 256 * 1024;

export function registerMachineRoutes(app: FastifyInstance, deps: MachineApiDeps) {
  const { reports } = deps;
  const machineToken = { machineToken: true } as const;

  // Resolved params of one machine: machine -> profiles -> global -> defaults, with where each came from.
  app.get<{ Params: { id: string }; Querystring: { sources?: string } }>('/machines/:id/params', async (req) => {
    const key = await resolveKey(deps, inventoryResource('machines'), req.params.id);
    const m = await deps.store.get('machines', key);
    if (!m) throw new HttpProblem(404, `machine '${req.params.id}' does not exist`);
    const r = await resolveParams(deps.store, m.doc as { params: Record<string, unknown>; profiles: string[] });
    if (!seesSecrets(req.principal)) r.values = redactParams(r.values, await deps.secureNames()) ?? {};
    return req.query.sources === 'true' ? r : r.values;
  });

  app.post<{ Params: { id: string } }>('/machines/:id/callback', { config: machineToken }, async (req) => {
    const body = (req.body ?? {}) as { event?: unknown; data?: unknown };
    const event = typeof body.event === 'string' && EVENT.test(body.event) ? body.event : undefined;
    if (!event)
      throw new HttpProblem(400, 'callback needs "event": a short lower-case word like "booted"', [
        { path: 'event', message: 'required' },
      ]);
    const data = typeof body.data === 'object' && body.data ? (body.data as Record<string, unknown>) : {};
    return reports.callback(req.params.id, event, data, req.ip);
  });

  // busybox wget in an initrd can only GET: /callback?event=booted&ip=...
  app.get<{ Params: { id: string }; Querystring: Record<string, string> }>(
    '/machines/:id/callback',
    { config: machineToken },
    async (req) => {
      const { event = 'booted', token: _t, ...data } = req.query;
      if (!EVENT.test(event))
        throw new HttpProblem(400, 'event must be a short lower-case word', [{ path: 'event', message: 'bad event' }]);
      return reports.callback(req.params.id, event, data, req.ip);
    },
  );

  // PUT from scripts; POST too, since busybox wget in the discovery image can only POST.
  const inventory = async (req: FastifyRequest<{ Params: { id: string } }>) => {
    const body = req.body as Record<string, unknown> | undefined;
    if (!body || typeof body !== 'object' || Array.isArray(body))
      throw new HttpProblem(400, 'inventory must be a JSON object');
    if (JSON.stringify(body).length > MAX_INVENTORY) throw new HttpProblem(413, 'inventory is larger than 256 KiB');
    return reports.inventory(req.params.id, body);
  };
  app.put('/machines/:id/inventory', { config: machineToken }, inventory);
  app.post('/machines/:id/inventory', { config: machineToken }, inventory);

  app.get<{ Params: { id: string } }>('/machines/:id/boots', async (req) => reports.bootsOf(req.params.id));
}
