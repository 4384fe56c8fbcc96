import type { FastifyReply } from 'fastify';
import type { z } from 'zod';

/** RFC 9457 problem details, with `errors` naming each offending field. */
import { zodIssues } from '../inventory/zod.js';
import type { FieldError } from '../model/errors.js';

export type { FieldError };
export type Problem = { type: string; title: string; status: number; detail: string; errors?: FieldError[] };

const titles: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  416: 'Range Not Satisfiable',
  422: 'Unprocessable Content',
  428: 'Precondition Required',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** Thrown anywhere in a handler; the error handler turns it into problem+json. */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    detail: string,
    readonly errors?: FieldError[],
    readonly headers?: Record<string, string>,
  ) {
    super(detail);
  }
}

export function problemBody(status: number, detail: string, errors?: FieldError[]): Problem {
  return { type: 'about:blank', title: titles[status] ?? 'Error', status, detail, ...(errors ? { errors } : {}) };
}

export function sendProblem(reply: FastifyReply, status: number, detail: string, errors?: FieldError[]) {
  return reply
    .code(status)
    .type('application/problem+json')
    .send(problemBody(status, detail, errors));
}

export function validationProblem(err: z.ZodError, what: string, prefix: PropertyKey[] = []): HttpProblem {
  const errors = zodIssues(err, prefix);
  const first = errors[0];
  const detail = first
    ? `${what} is not valid: ${first.path || '(body)'}: ${first.message}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}`
    : `${what} is not valid`;
  return new HttpProblem(400, detail, errors);
}
