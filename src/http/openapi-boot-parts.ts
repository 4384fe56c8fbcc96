import { API } from './api-prefix.js';
import { errors, idParam, type Parts, problem } from './openapi-parts.js';

/*
 * The OpenAPI document's parts for what machines, watchers and browsers call rather than operators' scripts: the
 * machine API (callback, inventory report, boot timeline), the event stream, the boot routes, the public files,
 * /metrics, /ui and the docs page. openapi.ts assembles them after the API's own parts (openapi-parts.ts).
 */

const text = (description: string) => ({ description, content: { 'text/plain': { schema: { type: 'string' } } } });
const q = (name: string, description: string) => ({
  name,
  in: 'query',
  required: false,
  schema: { type: 'string' },
  description,
});
const tokenQuery = q('token', "the machine's token, for clients that cannot send a header (busybox wget, iPXE)");
const obj = { type: 'object', additionalProperties: true };

/** Callback, inventory report and boot timeline of a machine (machine-api.ts); its own token may call the first two. */
export function machineApiParts({ schemas, paths }: Parts) {
  schemas.BootTimeline = {
    type: 'array',
    description:
      'boots, newest first: each with its steps (DHCP, TFTP/HTTP fetches, renders) and how it ended; each step names the daemon that recorded it (serverId), each boot the daemon that started it',
    items: obj,
  };
  const machineToken = 'A machine token may call it for its own uuid.';
  const callback = {
    description: 'Recorded (the boot timeline ends its boot at "booted")',
    content: { 'application/json': { schema: obj } },
  };
  paths[`${API}/machines/{id}/callback`] = {
    parameters: [idParam],
    get: {
      tags: ['machines'],
      summary: 'Callback from a booted machine, for clients that can only GET (busybox wget)',
      description: `The event is \`?event=\` (default "booted"); other query parameters are its data. ${machineToken}`,
      parameters: [q('event', 'a short lower-case word, default "booted"'), tokenQuery],
      responses: { 200: callback, ...errors },
    },
    post: {
      tags: ['machines'],
      summary: 'Callback from a booted machine',
      description: machineToken,
      parameters: [tokenQuery],
      requestBody: {
        required: true,
        content: {
          'application/json': {
            schema: {
              type: 'object',
              required: ['event'],
              properties: { event: { type: 'string', pattern: '^[a-z][a-z0-9_-]{0,31}$' }, data: obj },
            },
          },
        },
      },
      responses: { 200: callback, ...errors },
    },
  };
  const report = {
    tags: ['machines'],
    summary: "Inventory report (CPUs, memory, disks, NICs, DMI): replaces the machine's inventory",
    description: `${machineToken} PUT and POST do the same (busybox wget can only POST).`,
    parameters: [tokenQuery],
    requestBody: { required: true, content: { 'application/json': { schema: obj } } },
    responses: {
      200: { description: 'Stored', content: { 'application/json': { schema: obj } } },
      413: problem,
      ...errors,
    },
  };
  paths[`${API}/machines/{id}/inventory`] = { parameters: [idParam], put: report, post: report };
  paths[`${API}/machines/{id}/boots`] = {
    parameters: [idParam],
    get: {
      tags: ['machines'],
      summary: 'Boot timeline: what each boot was offered and fetched, and how it ended',
      responses: {
        200: {
          description: 'OK',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/BootTimeline' } } },
        },
        ...errors,
      },
    },
  };
}

/** GET /api/v1/events, Server-Sent Events (events.ts). */
export function eventParts({ paths }: Parts) {
  paths[`${API}/events`] = {
    get: {
      tags: ['events'],
      summary: 'Everything that happens, as Server-Sent Events (never ends)',
      description:
        'Each event is `id: <n>` (one increasing sequence for the daemon), `event: <type>` and `data: <JSON>`. A client reconnecting with `Last-Event-ID` (or `?lastEventId=`) first gets the events it missed from the last 1,024 DHCP events and, kept apart, the last 1,024 others; `event: lost` says the buffer no longer reaches back for a type the stream asks for (with `?machine=UUID`: for an event of that machine). Slow consumers are dropped; at most 64 streams (then 503 with Retry-After).',
      parameters: [
        q('type', 'keep types starting with this (comma-separated for several), e.g. lease.,boot.'),
        q('machine', "keep one machine's events (uuid)"),
        q('lastEventId', 'the id of the last event received: replay what came after it (as the Last-Event-ID header)'),
        {
          name: 'Last-Event-ID',
          in: 'header',
          required: false,
          description: 'the id of the last event received (sent by EventSource on reconnect)',
          schema: { type: 'string' },
        },
      ],
      responses: {
        200: { description: 'The stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
        ...errors,
      },
    },
  };
}

/** /boot/ipxe, /boot/ipxe/{mac} and /machines/{uuid}/{file} (boot.ts): no token, fetched by firmware. */
export function bootParts({ paths }: Parts) {
  const notBooting =
    'errors for an iPXE script are a 200 script that says why and does not boot (X-Plinth-Error: status)';
  paths['/boot/ipxe'] = {
    get: {
      tags: ['boot'],
      summary:
        'The generic iPXE script DHCP hands out: it chains to /boot/ipxe/{mac} with arch, platform, uuid, serial',
      security: [],
      responses: { 200: text('iPXE script') },
    },
  };
  paths['/boot/ipxe/{mac}'] = {
    get: {
      tags: ['boot'],
      summary: "A machine's iPXE script by MAC (an unknown MAC acknowledged by this daemon's DHCP is discovered)",
      description: `Secrets and the machine token are rendered only for a request that is the machine; ${notBooting}.`,
      security: [],
      parameters: [
        {
          name: 'mac',
          in: 'path',
          required: true,
          schema: { type: 'string' },
          description: 'colon or hyphen separated',
        },
        q('arch', "iPXE's ${buildarch}"),
        q('platform', "iPXE's ${platform} (pcbios, efi)"),
        q('uuid', 'SMBIOS UUID'),
        q('serial', 'DMI serial'),
        tokenQuery,
      ],
      responses: { 200: text('iPXE script'), 400: problem },
    },
  };
  paths['/machines/{uuid}/{file}'] = {
    get: {
      tags: ['boot'],
      summary: "One of a machine's rendered files (a bootenv template's path: boot.ipxe, cloud-init, Ignition, ...)",
      description: `{file} may contain slashes. ${notBooting}.`,
      security: [],
      parameters: [
        { name: 'uuid', in: 'path', required: true, schema: { type: 'string' } },
        { name: 'file', in: 'path', required: true, schema: { type: 'string' } },
        tokenQuery,
      ],
      responses: {
        200: { description: 'The rendered file (application/json for .json and .ign, else text/plain)' },
        404: problem,
        409: problem,
        500: problem,
      },
    },
  };
  paths['/files/{path}'] = {
    get: {
      tags: ['boot'],
      summary: 'An uploaded file or a boot loader of the assets dir, for firmware (Range, ETag, HEAD)',
      description:
        '{path} may contain slashes. A file whose pinned sha256 no longer matches is refused (409). Markup types are served as attachments.',
      security: [],
      parameters: [
        { name: 'path', in: 'path', required: true, schema: { type: 'string' } },
        { name: 'Range', in: 'header', required: false, schema: { type: 'string' } },
      ],
      responses: {
        200: {
          description: 'The file',
          content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
        },
        206: { description: 'The range asked for' },
        304: { description: 'Not modified (If-None-Match)' },
        400: problem,
        404: problem,
        409: problem,
        416: problem,
      },
    },
  };
  paths['/peer/v1/blobs/{sha256}'] = {
    get: {
      tags: ['files'],
      summary: 'A blob this daemon holds, for another daemon on the same inventory (several daemons only; Range, HEAD)',
      description:
        "Registered only on a daemon that shares its inventory (PostgreSQL) or has --files-origin. The bearer token is the inventory's peer secret, not an API token. Only what is on this disk is served: a peer asking never makes this daemon ask others. The receiver checks the bytes against the digest.",
      parameters: [
        { name: 'sha256', in: 'path', required: true, schema: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
        { name: 'Range', in: 'header', required: false, schema: { type: 'string' } },
      ],
      responses: {
        200: {
          description: 'The blob',
          content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
        },
        206: { description: 'The range asked for' },
        400: problem,
        401: problem,
        404: problem,
      },
    },
  };
}

/** /metrics, /ui, / and the docs page: not under the API prefix. */
export function pageParts({ paths }: Parts) {
  paths['/metrics'] = {
    get: {
      tags: ['info'],
      summary: 'Prometheus metrics (any role but machine; no token when the daemon runs with --metrics-public)',
      responses: { 200: text('Prometheus text exposition format'), 401: problem, 403: problem },
    },
  };
  const html = (description: string) => ({ description, content: { 'text/html': { schema: { type: 'string' } } } });
  paths['/ui'] = {
    get: {
      tags: ['ui'],
      summary: 'The web page (signs in with a token)',
      security: [],
      responses: { 200: html('The page') },
    },
  };
  paths['/'] = {
    get: { tags: ['ui'], summary: 'Redirects to /ui', security: [], responses: { 302: { description: 'To /ui' } } },
  };
  paths['/api/docs'] = {
    get: {
      tags: ['info'],
      summary: 'This document, browsable (Swagger UI)',
      security: [],
      responses: { 200: html('The page') },
    },
  };
  const doc = { description: 'This document', content: { 'application/json': { schema: { type: 'object' } } } };
  paths[`${API}/openapi.json`] = {
    get: { tags: ['info'], summary: 'This document (OpenAPI 3.1)', security: [], responses: { 200: doc } },
  };
  paths['/api/docs/json'] = {
    get: { tags: ['info'], summary: 'This document, as the docs page reads it', security: [], responses: { 200: doc } },
  };
  paths['/api/docs/yaml'] = {
    get: {
      tags: ['info'],
      summary: 'This document in YAML',
      security: [],
      responses: {
        200: { description: 'This document', content: { 'application/x-yaml': { schema: { type: 'string' } } } },
      },
    },
  };
}
