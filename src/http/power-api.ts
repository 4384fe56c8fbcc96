import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Bus } from '../events.js';
import type { Fleet } from '../fleet/index.js';
import { RolloutError } from '../fleet/rollouts.js';
import { resolveKey } from '../inventory/crud.js';
import { inventoryResource } from '../inventory/resources.js';
import { BMC_PASSWORD_MASK, type Machine } from '../model/machine.js';
import { PowerError } from '../power/driver.js';
import { lastBootUefi } from '../power/service.js';
import type { Store } from '../store/store.js';
import { HttpProblem, validationProblem } from './problem.js';

/**
 * A machine's power (state and actions through its BMC) and its reprovision, on the fleet (src/fleet). Also the
 * BMC password's write-only rule for the whole API scope: every response carries it as BMC_PASSWORD_MASK, and a
 * write that sends the mask back (a GET edited and PUT) keeps the stored password instead of storing the mask.
 */
export type PowerApiDeps = { store: Store; bus: Bus; fleet: Fleet | undefined };

export const PowerRequest = z.discriminatedUnion('action', [
  z.strictObject({ action: z.enum(['status', 'on', 'off', 'cycle', 'reset']) }),
  z.strictObject({
    action: z.literal('bootdev'),
    device: z.enum(['pxe', 'disk', 'none']),
    persistent: z.boolean().default(false),
    uefi: z.boolean().optional().describe("Default: from the machine's last DHCP client architecture (option 93)"),
  }),
]);
export const ReprovisionRequest = z.strictObject({ bootEnv: z.string().min(1).max(128) });

const machinesRes = inventoryResource('machines');
const operator = { config: { operator: true } } as const;

/** HTTP status for a BMC's failure: the BMC (an upstream) failed, 502/504; the machine cannot be powered, 409. */
export function powerProblem(err: unknown): unknown {
  if (err instanceof RolloutError) return new HttpProblem(err.status, err.message);
  if (!(err instanceof PowerError)) return err;
  const status = err.code === 'unsupported' ? 409 : err.code === 'timeout' ? 504 : 502;
  return new HttpProblem(status, `power: ${err.message}`, [{ path: 'bmc', message: err.code }]);
}

function maskBmc(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(maskBmc);
  if (!v || typeof v !== 'object') return v;
  const o = v as Record<string, unknown>;
  const bmc = o.bmc as Record<string, unknown> | undefined;
  if (bmc && typeof bmc === 'object' && typeof bmc.password === 'string') {
    return { ...o, bmc: { ...bmc, password: BMC_PASSWORD_MASK } };
  }
  return v;
}

/** The mask sent back in a machine write stands for the stored password. */
async function keepPassword(deps: PowerApiDeps, req: FastifyRequest) {
  const body = req.body as Record<string, unknown> | unknown[] | undefined;
  const sent = (b: unknown) => (b as { bmc?: { password?: unknown } } | undefined)?.bmc?.password === BMC_PASSWORD_MASK;
  const isPatchOp = (op: { path?: unknown; value?: unknown }) =>
    (op.path === '/bmc/password' && op.value === BMC_PASSWORD_MASK) || (op.path === '/bmc' && sent({ bmc: op.value }));
  if (!body || !(Array.isArray(body) ? body.some((op) => isPatchOp(op as never)) : sent(body))) return;
  const id = (req.params as { id?: string }).id;
  const key = id
    ? await resolveKey({ store: deps.store, bus: deps.bus }, machinesRes, id).catch(() => undefined)
    : undefined;
  const stored = key ? ((await deps.store.get('machines', key))?.doc as Machine | undefined)?.bmc?.password : undefined;
  const fix = (b: { bmc: Record<string, unknown> }) => {
    if (stored === undefined) delete b.bmc.password;
    else b.bmc.password = stored;
  };
  if (!Array.isArray(body)) return fix(body as { bmc: Record<string, unknown> });
  for (const op of body as { path?: string; value?: unknown }[]) {
    if (op.path === '/bmc' && sent({ bmc: op.value })) fix({ bmc: op.value as Record<string, unknown> });
    else if (isPatchOp(op)) op.value = stored ?? '';
  }
}

function fleet(deps: PowerApiDeps): Fleet {
  const f = deps.fleet;
  if (!f) throw new HttpProblem(503, 'power control is not running in this daemon');
  return f;
}

async function machineOf(deps: PowerApiDeps, id: string): Promise<Machine> {
  const key = await resolveKey({ store: deps.store, bus: deps.bus }, machinesRes, id);
  const m = (await deps.store.get('machines', key))?.doc as Machine | undefined;
  if (!m) throw new HttpProblem(404, `machine '${id}' does not exist`);
  return m;
}

export function registerPowerRoutes(app: FastifyInstance, deps: PowerApiDeps) {
  app.addHook('onSend', async (_req: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    if (typeof payload !== 'string' || !payload.includes('"password"') || !payload.includes('"bmc"')) return payload;
    if (!String(reply.getHeader('content-type') ?? '').includes('json')) return payload;
    try {
      return JSON.stringify(maskBmc(JSON.parse(payload)));
    } catch {
      return payload;
    }
  });
  app.addHook('preHandler', async (req) => {
    if (req.method !== 'GET' && req.routeOptions.url?.endsWith('/machines/:id')) await keepPassword(deps, req);
  });

  app.get<{ Params: { id: string } }>('/machines/:id/power', async (req) => {
    const m = await machineOf(deps, req.params.id);
    const state = await fleet(deps)
      .power.status(m.uuid)
      .catch((err) => {
        throw powerProblem(err);
      });
    return { machine: m.uuid, name: m.name, driver: m.bmc?.driver, state };
  });

  app.post<{ Params: { id: string } }>('/machines/:id/power', operator, async (req) => {
    const parsed = PowerRequest.safeParse(req.body ?? {});
    if (!parsed.success) throw validationProblem(parsed.error, 'power request');
    const m = await machineOf(deps, req.params.id);
    const f = fleet(deps);
    const r = parsed.data;
    try {
      if (r.action === 'status') return { machine: m.uuid, action: r.action, state: await f.power.status(m.uuid) };
      if (r.action === 'bootdev') {
        const timeline = await deps.store.list('boots', {
          filters: [{ field: 'machine', value: m.uuid }],
          sort: { field: 'startedAt', desc: true },
          limit: 5,
        });
        const uefi = r.uefi ?? lastBootUefi(m, timeline.items.map((i) => i.doc) as never);
        const override = { device: r.device, persistent: r.persistent, uefi };
        await f.power.setBootDevice(m.uuid, override);
        return { machine: m.uuid, action: r.action, ...override };
      }
      await f.power.power(m.uuid, r.action);
      return { machine: m.uuid, action: r.action };
    } catch (err) {
      throw powerProblem(err);
    }
  });

  app.post<{ Params: { id: string } }>('/machines/:id/actions/reprovision', operator, async (req, reply) => {
    const parsed = ReprovisionRequest.safeParse(req.body ?? {});
    if (!parsed.success) throw validationProblem(parsed.error, 'reprovision request');
    const m = await machineOf(deps, req.params.id);
    if (!(await deps.store.get('bootenvs', parsed.data.bootEnv))) {
      throw new HttpProblem(400, `bootenv '${parsed.data.bootEnv}' does not exist`, [
        { path: 'bootEnv', message: 'no such bootenv' },
      ]);
    }
    if (!m.bmc || m.bmc.driver === 'manual') {
      throw new HttpProblem(409, `machine '${m.name}' has no BMC Plinth can drive: set its "bmc" first`, [
        { path: 'bmc', message: m.bmc ? 'manual driver' : 'missing' },
      ]);
    }
    try {
      return reply.code(202).send(await fleet(deps).reprovision(m.uuid, parsed.data.bootEnv));
    } catch (err) {
      throw powerProblem(err);
    }
  });

  app.get<{ Params: { id: string } }>('/machines/:id/actions/reprovision', async (req) => {
    const m = await machineOf(deps, req.params.id);
    const s = await fleet(deps).lastReprovision(m.uuid);
    if (!s) throw new HttpProblem(404, `machine '${m.name}' has not been reprovisioned outside a rollout`);
    return s;
  });
}
