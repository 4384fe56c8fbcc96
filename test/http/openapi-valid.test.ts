import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { openApiDocument } from '../../src/http/openapi.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { buildTestApp } from '../helpers/boot-service.js';

/*
 * The OpenAPI document is valid OpenAPI 3.1 (issue 14: the 3.0.3 document embedding JSON Schema 2020-12 had 596
 * errors, so no SDK could be generated from it). Two checks: @apidevtools/swagger-parser validates the document
 * (structure, path parameters declared, refs resolve), and since 3.1's meta-schema lets any object be a Schema
 * Object, every Schema Object is also compiled by Ajv's JSON Schema 2020-12 validator in strict mode, which
 * refuses keywords 2020-12 does not have (3.0's `nullable`, a misspelt `propertys`) and invalid schemas.
 */
const doc = () => openApiDocument('test') as Record<string, any>;
const BASE = 'https://plinth.invalid/components/schemas/';

/** Every Schema Object under `paths` (parameters, request bodies, responses), with where it is. */
function pathSchemas(node: unknown, at: string, out: [string, unknown][]) {
  if (!node || typeof node !== 'object') return out;
  for (const [k, v] of Object.entries(node)) {
    if (k === 'schema' && v && typeof v === 'object') out.push([`${at}/schema`, v]);
    else pathSchemas(v, `${at}/${k}`, out);
  }
  return out;
}

/** `#/components/schemas/X` refs as absolute URIs Ajv resolves among the schemas it was given. */
const absolute = (s: unknown) =>
  JSON.parse(JSON.stringify(s).replaceAll('"#/components/schemas/', `"${BASE}`)) as Record<string, unknown>;

describe('the OpenAPI document', () => {
  it('says 3.1.0 and passes swagger-parser', async () => {
    const d = doc();
    expect(d.openapi).toBe('3.1.0');
    await expect(SwaggerParser.validate(structuredClone(d) as never)).resolves.toBeDefined();
  });

  it('swagger-parser is a real check: the document as 3.0.3 (what it said before) is refused', async () => {
    await expect(SwaggerParser.validate({ ...doc(), openapi: '3.0.3' } as never)).rejects.toThrow(/validation failed/i);
    const d = doc();
    delete d.paths['/api/v1/machines/{id}/boots'].get.responses['200'].description;
    await expect(SwaggerParser.validate(d as never)).rejects.toThrow(/description/);
  });

  it('every Schema Object is valid JSON Schema 2020-12 with no keyword outside it (Ajv strict)', () => {
    const ajv = new Ajv2020({ strict: true, validateFormats: false, allowUnionTypes: true });
    // The Schema Object keywords OpenAPI 3.1 adds to JSON Schema 2020-12 (OAS 3.1 section 4.8.24).
    ajv.addVocabulary(['discriminator', 'xml', 'externalDocs', 'example']);
    const d = doc();
    const components = Object.entries(d.components.schemas as Record<string, unknown>);
    for (const [name, s] of components) ajv.addSchema(absolute(s), `${BASE}${name}`);
    const bad: string[] = [];
    const all: [string, unknown][] = [
      ...components.map(([name]): [string, unknown] => [`#/components/schemas/${name}`, { $ref: `${BASE}${name}` }]),
      ...pathSchemas(d.paths, '#/paths', []),
    ];
    for (const [where, s] of all) {
      try {
        ajv.compile(absolute(s));
      } catch (e) {
        bad.push(`${where}: ${(e as Error).message}`);
      }
    }
    expect(bad).toEqual([]);
    expect(all.length).toBeGreaterThan(50);
  });

  it('the strict check is a real check: 3.0 spellings and unknown keywords are refused', () => {
    const ajv = new Ajv2020({ strict: true });
    expect(() => ajv.compile({ type: 'number', minimum: 0, exclusiveMinimum: true })).toThrow(/exclusiveMinimum/);
    expect(() => ajv.compile({ type: 'object', propertys: {} })).toThrow(/propertys/);
  });

  it("has no 3.0-only keyword Ajv would let through (`nullable`) and no $schema (3.1 sets the document's dialect)", () => {
    const text = JSON.stringify(doc());
    expect(text).not.toContain('"nullable"');
    expect(text).not.toContain('"$schema"');
  });
});

describe('/api/docs renders the 3.1 document', () => {
  let app: FastifyInstance;
  let store: Store;
  beforeAll(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'plinth-openapi-'));
    store = openSqliteStore(':memory:');
    app = await buildTestApp({
      store,
      bus: createBus(),
      log: silentLogger,
      dataDir: dir,
      filesDir: dir,
      info: () => ({}),
      version: 'test',
    });
    await app.ready();
  });
  afterAll(async () => {
    await app.close();
    await store.close();
  });

  it('serves the Swagger UI page without a token', async () => {
    const r = await app.inject({ url: '/api/docs' });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/text\/html/);
    expect(r.body).toMatch(/swagger-ui-bundle\.js/);
    expect(r.body).toMatch(/swagger-initializer\.js/);
  });

  it('the page reads ./json, which is the document, unchanged', async () => {
    const init = await app.inject({ url: '/api/docs/static/swagger-initializer.js' });
    expect(init.statusCode).toBe(200);
    expect(init.body).toMatch(/resolveUrl\('\.\/json'\)/);
    const json = await app.inject({ url: '/api/docs/json' });
    expect(json.statusCode).toBe(200);
    expect(json.json()).toEqual(openApiDocument('test'));
    expect(json.json().openapi).toBe('3.1.0');
  });

  it('the bundled Swagger UI knows OpenAPI 3.1 (5.x renders 3.1 documents)', async () => {
    const r = await app.inject({ url: '/api/docs/static/swagger-ui-bundle.js' });
    expect(r.statusCode).toBe(200);
    expect(r.body).toContain('isOAS31');
  });
});
