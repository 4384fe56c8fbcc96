import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { daemonParts } from './daemons-api.js';
import { bootParts, eventParts, machineApiParts, pageParts } from './openapi-boot-parts.js';
import { imageParts } from './openapi-images.js';
import {
  baseSchemas,
  fileParts,
  infoParts,
  type Parts,
  paramsAndPrefsParts,
  resourceParts,
  tokenAndAuditParts,
} from './openapi-parts.js';
import { powerParts } from './openapi-power.js';

/**
 * The OpenAPI 3.1 document of every route the app registers (test/http/openapi-routes.test.ts holds it to that),
 * built from the same zod schemas that validate requests (parts: openapi-parts.ts for the API, openapi-boot-parts.ts
 * for what machines, watchers and browsers call). 3.1, not 3.0: its Schema Object is JSON Schema 2020-12, which is
 * what zod 4 writes (`propertyNames`, `type` arrays and `const` are invalid in 3.0).
 */
export function openApiDocument(version: string): Record<string, unknown> {
  const parts: Parts = { schemas: baseSchemas(), paths: {} };
  resourceParts(parts);
  paramsAndPrefsParts(parts);
  fileParts(parts);
  imageParts(parts);
  tokenAndAuditParts(parts);
  infoParts(parts);
  machineApiParts(parts);
  powerParts(parts);
  daemonParts(parts);
  eventParts(parts);
  bootParts(parts);
  pageParts(parts);
  return {
    openapi: '3.1.0',
    info: {
      title: 'Plinth API',
      version,
      description: 'Bare-metal provisioning: inventory, DHCP subnets, boot environments, files.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: '/' }],
    components: { schemas: parts.schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths: parts.paths,
  };
}

/** GET /api/v1/openapi.json: declared relative to the public API scope's prefix (auth.ts publicScope). */
export function registerOpenApi(app: FastifyInstance, doc: Record<string, unknown>) {
  app.get('/openapi.json', async () => doc);
}

/** The Swagger UI at /api/docs, outside the API's prefix, no token (it reads the document above). */
export async function registerApiDocs(app: FastifyInstance, doc: Record<string, unknown>) {
  await app.register(swagger, { mode: 'static', specification: { document: doc as never } });
  await app.register(swaggerUi, { routePrefix: '/api/docs' });
}
