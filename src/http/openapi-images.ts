import { Manifest } from '../images/manifest.js';
import { API } from './api-prefix.js';
import { errors, json, type Parts, problem, ref } from './openapi-parts.js';

/** Images: verified import from a manifest, a bootenv's readiness, and the blob store's garbage collection. */
export function imageParts({ schemas, paths }: Parts) {
  schemas.ImageManifest = json(Manifest);
  schemas.ArtifactState = {
    type: 'object',
    required: ['path', 'sha256', 'blob', 'state'],
    properties: {
      path: { type: 'string' },
      sha256: { type: 'string' },
      blob: { type: 'string', description: 'Where the pinned bytes are served: /files/<blob>' },
      state: { enum: ['present', 'missing', 'corrupt'] },
      size: { type: 'integer' },
      detail: { type: 'string' },
    },
  };
  paths[`${API}/bootenvs/{name}/status`] = {
    parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
    get: {
      tags: ['bootenvs'],
      summary: 'Is the bootenv ready (every pinned artifact present with its digest)? Which are missing?',
      responses: {
        200: {
          description: 'OK',
          content: {
            'application/json': {
              schema: {
                type: 'object',
                properties: {
                  name: { type: 'string' },
                  ready: { type: 'boolean' },
                  missing: { type: 'array', items: { type: 'string' } },
                  artifacts: { type: 'array', items: ref('ArtifactState') },
                },
              },
            },
          },
        },
        ...errors,
      },
    },
  };
  paths[`${API}/bootenvs/import`] = {
    post: {
      tags: ['bootenvs'],
      summary:
        'Fetch, verify (OpenPGP-signed checksums, gpgv) and keep a manifest\'s artifacts; create the bootenv pinning them (admin). Accept: application/x-ndjson streams progress lines, then {"result"} or {"problem"}',
      requestBody: {
        content: {
          'application/json': {
            schema: {
              type: 'object',
              required: ['manifest'],
              properties: {
                manifest: { oneOf: [ref('ImageManifest'), { type: 'string', description: 'YAML or JSON text' }] },
                replace: { type: 'boolean' },
                allowUnsigned: { type: 'boolean' },
              },
            },
          },
        },
      },
      responses: { 201: { description: 'Imported' }, 422: problem, 502: problem, ...errors },
    },
  };
  paths[`${API}/files/gc`] = {
    post: {
      tags: ['files'],
      summary: 'Remove the blobs no bootenv pins and no path links (admin); reports the bytes freed',
      responses: { 200: { description: 'OK' }, ...errors },
    },
  };
}
