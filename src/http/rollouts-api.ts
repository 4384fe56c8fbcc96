import type { FastifyInstance } from 'fastify';
import type { Fleet } from '../fleet/index.js';
import { RolloutSpec } from '../model/rollout.js';
import { API } from './api-prefix.js';
import { powerProblem } from './power-api.js';
import { HttpProblem, validationProblem } from './problem.js';

/**
 * Rollouts (src/fleet/rollouts.ts): create one from a selector and a bootenv, list, show, pause, resume, abort.
 * Progress also goes out as `rollout.progress` events (/api/v1/events).
 */
export function registerRolloutRoutes(app: FastifyInstance, deps: { fleet: Fleet | undefined }) {
  const engine = () => {
    const f = deps.fleet;
    if (!f) throw new HttpProblem(503, 'rollouts are not running in this daemon');
    return f.rollouts;
  };
  const operator = { config: { operator: true } } as const;
  const wrap = async <T>(p: () => Promise<T>): Promise<T> => {
    try {
      return await p();
    } catch (err) {
      throw powerProblem(err);
    }
  };

  app.post('/rollouts', operator, async (req, reply) => {
    const parsed = RolloutSpec.safeParse(req.body ?? {});
    if (!parsed.success) throw validationProblem(parsed.error, 'rollout');
    const r = await wrap(() => engine().create(parsed.data));
    return reply.code(201).header('location', `${API}/rollouts/${r.id}`).send(r);
  });
  app.get('/rollouts', async () => wrap(() => engine().list()));
  app.get<{ Params: { id: string } }>('/rollouts/:id', async (req) => wrap(() => engine().get(req.params.id)));
  for (const verb of ['pause', 'resume', 'abort'] as const) {
    app.post<{ Params: { id: string } }>(`/rollouts/:id/${verb}`, operator, async (req) =>
      wrap(() => engine()[verb](req.params.id)),
    );
  }
}
