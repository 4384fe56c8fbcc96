import type { FastifyInstance } from 'fastify';
import { HttpProblem } from './problem.js';

/** JSON nested deeper than this is refused at parse time (nothing Plinth stores comes near it). */
export const MAX_JSON_DEPTH = 64;

/** Whether JSON text nests arrays/objects deeper than `max`: one pass over the text, strings skipped. */
export function jsonTooDeep(s: string, max = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 34) {
      // a string: skip to its closing quote
      for (i++; i < s.length; i++) {
        const d = s.charCodeAt(i);
        if (d === 92) i++;
        else if (d === 34) break;
      }
    } else if (c === 123 || c === 91) {
      if (++depth > max) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}

const tooDeep = () =>
  new HttpProblem(400, `the body nests JSON deeper than ${MAX_JSON_DEPTH} levels`, [
    { path: '(body)', message: 'too deeply nested' },
  ]);

/**
 * The app's JSON parsers: fastify's own (which refuses __proto__ and constructor.prototype keys) after a depth
 * check, since a 5,000-deep document parses fine but then fails in the store (SQLite's JSON functions stop at
 * 1,000). An empty body is no body: curl scripts send `Content-Type: application/json` on every request, a
 * DELETE included, and a route that needs a body refuses `undefined` itself (400 naming the body). Set on the
 * root instance, so every scope inherits them.
 */
export function addJsonParsers(app: FastifyInstance) {
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body === '') return done(null, undefined);
    if (jsonTooDeep(body as string)) return done(tooDeep(), undefined);
    defaultJson(req, body as string, done);
  });
  // JSON bodies under any +json media type (merge-patch, json-patch) parse like application/json.
  app.addContentTypeParser(/^application\/[a-z0-9.+-]*\+json$/, { parseAs: 'string' }, (req, body, done) => {
    if (body === '') return done(null, undefined);
    if (jsonTooDeep(body as string)) return done(tooDeep(), undefined);
    defaultJson(req, body as string, done);
  });
}
