import type { FastifyInstance } from 'fastify';
import { API } from './app.js';

/** What /info reports; the daemon fills it from what it actually bound. */
export type InfoSource = () => Record<string, unknown>;

export function registerInfo(app: FastifyInstance, info: InfoSource) {
  app.get(`${API}/info`, async () => info());
}
