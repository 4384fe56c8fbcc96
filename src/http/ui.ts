import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';

const page = readFileSync(new URL('./ui/index.html', import.meta.url), 'utf8');

/**
 * The web page at /ui: one self-contained HTML file (no framework, no build step) that talks to the REST API
 * with the token the operator pastes, and stays live through the event stream.
 */
export function registerUi(app: FastifyInstance) {
  app.get('/ui', async (_req, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
      .send(page),
  );
  app.get('/', async (_req, reply) => reply.redirect('/ui'));
}
