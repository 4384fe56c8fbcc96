import type { FastifyInstance } from 'fastify';
import { InvalidError, StateConflictError } from '../model/errors.js';
import { BackendError, ConflictError, NotFoundError, PreconditionError } from '../store/store.js';
import { API } from './api-prefix.js';
import type { FieldError } from './problem.js';
import { HttpProblem, problemBody } from './problem.js';
import { logUrl } from './redact.js';

type Mapped = { status: number; detail: string; errors?: FieldError[] };

/** What an error thrown by a handler, the inventory or the store means to the client. */
export function problemOf(err: unknown): Mapped & { headers?: Record<string, string> } {
  if (err instanceof HttpProblem)
    return { status: err.status, detail: err.message, errors: err.errors, headers: err.headers };
  if (err instanceof InvalidError) {
    const first = err.errors[0];
    const detail = first ? `${err.message}: ${first.path || '(body)'}: ${first.message}` : err.message;
    return { status: 400, detail, errors: err.errors };
  }
  if (err instanceof StateConflictError)
    return { status: 409, detail: err.message, errors: err.errors.length ? err.errors : undefined };
  if (err instanceof NotFoundError) return { status: 404, detail: err.message };
  if (err instanceof ConflictError)
    return {
      status: 409,
      detail: err.message,
      errors: [{ path: err.field === 'key' ? 'name' : err.field, message: err.message }],
    };
  if (err instanceof PreconditionError) return { status: 412, detail: err.message };
  if (err instanceof BackendError)
    return {
      status: 503,
      detail: `${err.message}: the inventory could not be read or written; nothing was changed`,
    };
  const code = (err as { statusCode?: unknown } | undefined)?.statusCode;
  // fastify's own 4xx (body too large, bad JSON, unsupported media type).
  if (typeof code === 'number' && code < 500) return { status: code, detail: (err as Error).message };
  return { status: 500, detail: 'internal error: see the daemon log' };
}

/**
 * Every error and every unmatched request answers RFC 9457 problem+json. Set on the root instance, so every
 * scope inherits them; a 5xx is logged with its error (the client only learns to look at the log).
 */
export function setProblemHandlers(app: FastifyInstance) {
  app.setErrorHandler((err, req, reply) => {
    const p = problemOf(err);
    if (p.headers) reply.headers(p.headers);
    if (p.status >= 500) req.log.error({ err, url: logUrl(req.url) }, 'request failed');
    reply
      .code(p.status)
      .type('application/problem+json')
      .send(problemBody(p.status, p.detail, p.errors));
  });

  app.setNotFoundHandler((req, reply) => {
    reply
      .code(404)
      .type('application/problem+json')
      .send(problemBody(404, `no route ${req.method} ${req.url.split('?')[0]}: see ${API}/openapi.json`));
  });
}
