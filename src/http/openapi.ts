import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import {
  baseSchemas,
  fileParts,
  infoParts,
  type Parts,
  paramsAndPrefsParts,
  resourceParts,
  tokenAndAuditParts,
} from './openapi-parts.js';

/** The OpenAPI 3 document, built from the same zod schemas that validate requests (parts: openapi-parts.ts). */
export function openApiDocument(version: string): Record<string, unknown> {
  const parts: Parts = { schemas: baseSchemas(), paths: {} };
  resourceParts(parts);
  paramsAndPrefsParts(parts);
  fileParts(parts);
  tokenAndAuditParts(parts);
  infoParts(parts);
  return {
    openapi: '3.0.3',
    info: {
      title: 'Plinth API',
      version,
      description: 'Bare-metal provisioning: inventory, DHCP subnets, boot environments, files.',
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
