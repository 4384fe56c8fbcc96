import type { FastifyInstance } from 'fastify';

/** What /info reports; the daemon fills it from what it actually bound. */
export type InfoSource = () => Record<string, unknown>;

/** GET /api/v1/info: declared relative to the public API scope's prefix (auth.ts publicScope), no token. */
export function registerInfo(app: FastifyInstance, info: InfoSource) {
  app.get('/info', async () => info());
}
