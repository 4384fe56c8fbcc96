import { z } from 'zod';
import { INVENTORY_RESOURCES } from '../inventory/resources.js';
import { Prefs } from '../model/profile.js';
import { API } from './api-prefix.js';
import { NewToken } from './tokens.js';

/**
 * The OpenAPI document's parts, one per area of the API, each adding its schemas and paths in the order the
 * document lists them (openapi.ts assembles them). Built from the same zod schemas that validate requests.
 */
export type Parts = { schemas: Record<string, unknown>; paths: Record<string, unknown> };

/**
 * A zod schema as JSON Schema 2020-12, the dialect of OpenAPI 3.1's Schema Object (its default
 * `jsonSchemaDialect`), so no `$schema` is repeated in every component.
 */
export function json(s: z.ZodType): Record<string, unknown> {
  const { $schema: _dialect, ...schema } = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  return schema;
}
export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
export const problem = {
  description: 'Problem details (RFC 9457)',
  content: { 'application/problem+json': { schema: ref('Problem') } },
};
export const errors = {
  400: problem,
  401: problem,
  403: problem,
  404: problem,
  409: problem,
  412: problem,
  503: problem,
};

export const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };

/** Problem details, prefs and file info: the schemas listed first. */
export function baseSchemas(): Record<string, unknown> {
  return {
    Problem: {
      type: 'object',
      properties: {
        type: { type: 'string' },
        title: { type: 'string' },
        status: { type: 'integer' },
        detail: { type: 'string' },
        errors: {
          type: 'array',
          items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } },
        },
      },
    },
    Prefs: json(Prefs),
    FileInfo: {
      type: 'object',
      properties: {
        path: { type: 'string' },
        size: { type: 'integer' },
        sha256: { type: 'string' },
        modifiedAt: { type: 'string' },
      },
    },
  };
}

/** List/create and get/replace/patch/delete for every inventory resource (src/inventory/resources.ts). */
export function resourceParts({ schemas, paths }: Parts) {
  for (const res of INVENTORY_RESOURCES) {
    const name = res.kind[0]!.toUpperCase() + res.kind.slice(1, -1);
    schemas[name] = json(res.schema);
    const body = { required: true, content: { 'application/json': { schema: ref(name) } } };
    const one = { description: 'OK (ETag header set)', content: { 'application/json': { schema: ref(name) } } };
    const shape = res.schema.shape as Record<string, unknown>;
    const filterParams = Object.keys(shape).map((f) => ({
      name: f,
      in: 'query',
      required: false,
      schema: { type: 'string' },
      description: `filter: ${f}=value`,
    }));
    paths[`${API}/${res.kind}`] = {
      get: {
        tags: [res.kind],
        summary: `List ${res.kind}`,
        description: res.summary,
        parameters: [
          ...filterParams,
          { name: 'limit', in: 'query', schema: { type: 'integer' } },
          { name: 'offset', in: 'query', schema: { type: 'integer' } },
          { name: 'sort', in: 'query', schema: { type: 'string' }, description: 'field, or -field for descending' },
        ],
        responses: {
          200: {
            description: 'OK; X-Total-Count header holds the total',
            content: { 'application/json': { schema: { type: 'array', items: ref(name) } } },
          },
          ...errors,
        },
      },
      ...(res.readOnly
        ? {}
        : {
            post: {
              tags: [res.kind],
              summary: `Create a ${name.toLowerCase()}`,
              requestBody: body,
              responses: { 201: one, ...errors },
            },
          }),
    };
    paths[`${API}/${res.kind}/{id}`] = {
      parameters: [idParam],
      get: {
        tags: [res.kind],
        summary: `Get one ${name.toLowerCase()}`,
        responses: { 200: one, 304: { description: 'Not modified' }, ...errors },
      },
      ...(res.readOnly
        ? {}
        : {
            put: {
              tags: [res.kind],
              summary: 'Replace (If-Match honoured)',
              requestBody: body,
              responses: { 200: one, ...errors },
            },
            patch: {
              tags: [res.kind],
              summary: 'JSON Merge Patch or JSON Patch (If-Match honoured)',
              requestBody: {
                content: {
                  'application/merge-patch+json': { schema: { type: 'object' } },
                  'application/json-patch+json': { schema: { type: 'array', items: { type: 'object' } } },
                },
              },
              responses: { 200: one, ...errors },
            },
          }),
      delete: {
        tags: [res.kind],
        summary: 'Delete (If-Match honoured)',
        responses: { 204: { description: 'Deleted' }, ...errors },
      },
    };
  }
}

/** A machine's resolved params and the global prefs. */
export function paramsAndPrefsParts({ paths }: Parts) {
  paths[`${API}/machines/{id}/params`] = {
    parameters: [idParam],
    get: {
      tags: ['machines'],
      summary: 'Resolved params: machine, then its profiles in order, then global, then defaults',
      responses: { 200: { description: 'OK' }, ...errors },
    },
  };
  paths[`${API}/prefs`] = {
    get: {
      tags: ['prefs'],
      summary: 'Global settings',
      responses: { 200: { description: 'OK', content: { 'application/json': { schema: ref('Prefs') } } } },
    },
    put: {
      tags: ['prefs'],
      requestBody: { content: { 'application/json': { schema: ref('Prefs') } } },
      responses: { 200: { description: 'OK' }, ...errors },
    },
    patch: {
      tags: ['prefs'],
      requestBody: { content: { 'application/merge-patch+json': { schema: { type: 'object' } } } },
      responses: { 200: { description: 'OK' }, ...errors },
    },
  };
}

/** Uploaded files: list, info, upload, delete. */
export function fileParts({ paths }: Parts) {
  paths[`${API}/files`] = {
    get: {
      tags: ['files'],
      summary: 'List uploaded files with size and sha256',
      responses: {
        200: {
          description: 'OK',
          content: { 'application/json': { schema: { type: 'array', items: ref('FileInfo') } } },
        },
      },
    },
  };
  paths[`${API}/files/{path}`] = {
    parameters: [{ name: 'path', in: 'path', required: true, schema: { type: 'string' } }],
    get: {
      tags: ['files'],
      summary: 'Size and sha256 of one file',
      responses: {
        200: { description: 'OK', content: { 'application/json': { schema: ref('FileInfo') } } },
        ...errors,
      },
    },
    put: {
      tags: ['files'],
      summary: 'Upload (raw body, streamed; X-Checksum-Sha256 or ?sha256= verifies it); served at /files/{path}',
      requestBody: { content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
      responses: { 200: { description: 'Replaced' }, 201: { description: 'Created' }, ...errors },
    },
    delete: { tags: ['files'], responses: { 204: { description: 'Deleted' }, ...errors } },
  };
}

/** GET /api/v1/info, public. */
export function infoParts({ paths }: Parts) {
  paths[`${API}/info`] = {
    get: {
      tags: ['info'],
      summary: 'Version, uptime, listeners, features (no token)',
      security: [],
      responses: { 200: { description: 'OK' } },
    },
  };
}

/** Tokens and the audit log (admin). */
export function tokenAndAuditParts({ schemas, paths }: Parts) {
  const str = { type: 'string' };
  schemas.NewToken = json(NewToken);
  schemas.Token = {
    type: 'object',
    properties: {
      id: { type: 'string', description: 'first 16 hex digits of the sha256 of the secret' },
      name: str,
      role: { type: 'string', enum: ['admin', 'operator', 'viewer', 'machine'] },
      machine: str,
      createdAt: str,
      expiresAt: str,
      lastUsedAt: str,
      source: { type: 'string', enum: ['env', 'file', 'api', 'render'] },
    },
  };
  schemas.AuditEntry = {
    type: 'object',
    properties: {
      at: str,
      who: { type: 'string', description: 'token name' },
      tokenId: str,
      role: str,
      method: str,
      route: { type: 'string', description: 'route pattern, e.g. /api/v1/machines/:id' },
      id: { type: 'string', description: 'resource id from the path' },
      status: { type: 'integer' },
      ip: str,
    },
  };
  const q = (name: string, description: string, type = 'string') => ({
    name,
    in: 'query',
    required: false,
    schema: { type },
    description,
  });
  const list = (name: string) => ({
    description: 'OK (X-Total-Count header)',
    content: { 'application/json': { schema: { type: 'array', items: ref(name) } } },
  });
  paths[`${API}/tokens`] = {
    get: {
      tags: ['tokens'],
      summary: 'List tokens (admin): never the secret',
      parameters: [q('role', 'filter by role'), q('limit', 'page size', 'integer'), q('offset', 'skip', 'integer')],
      responses: { 200: list('Token'), ...errors },
    },
    post: {
      tags: ['tokens'],
      summary: 'Create a token (admin); the answer carries the secret, shown this once',
      requestBody: { required: true, content: { 'application/json': { schema: ref('NewToken') } } },
      responses: { 201: { description: 'Created: the Token plus "token", the secret' }, ...errors },
    },
  };
  paths[`${API}/tokens/{id}`] = {
    parameters: [{ name: 'id', in: 'path', required: true, schema: str }],
    get: { tags: ['tokens'], responses: { 200: { description: 'OK' }, ...errors } },
    delete: { tags: ['tokens'], summary: 'Revoke at once', responses: { 204: { description: 'Revoked' }, ...errors } },
  };
  paths[`${API}/audit`] = {
    get: {
      tags: ['audit'],
      summary: 'Writes through the API, newest first (admin)',
      parameters: [
        q('who', 'token name'),
        q('since', 'ISO time: entries at or after it'),
        q('limit', 'page size, up to 1000 (default 100)', 'integer'),
        q('offset', 'skip', 'integer'),
      ],
      responses: { 200: list('AuditEntry'), ...errors },
    },
  };
  paths[`${API}/backup`] = {
    get: {
      tags: ['backup'],
      summary: 'A consistent snapshot of the live database (SQLite online backup), safe while serving (admin)',
      description: 'Holds every token hash and secure param: `plinth backup FILE` saves it 0600.',
      responses: {
        200: {
          description: 'The SQLite database file',
          content: { 'application/vnd.sqlite3': { schema: { type: 'string', format: 'binary' } } },
        },
        ...errors,
      },
    },
  };
}
