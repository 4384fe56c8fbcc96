/**
 * GET /api/v1/daemons (issue 17): the daemons sharing this inventory, from their heartbeats
 * (src/daemon-registry.ts), each with whether it is alive and whether it leads (src/leader.ts). Any token may read
 * it (viewer and up).
 */
import type { FastifyInstance } from 'fastify';
import { listDaemons } from '../daemon-registry.js';
import type { Store } from '../store/store.js';
import { API } from './api-prefix.js';
import { errors, type Parts, ref } from './openapi-parts.js';

export function registerDaemonRoutes(api: FastifyInstance, deps: { store: Store }) {
  api.get('/daemons', async () => listDaemons(deps.store));
}

const daemonSchema = {
  type: 'object',
  required: ['serverId', 'host', 'pid', 'version', 'backend', 'startedAt', 'beatAt', 'beatSeconds', 'alive', 'leader'],
  properties: {
    serverId: { type: 'string', description: "The daemon's --server-id (default: its host name)" },
    host: { type: 'string' },
    pid: { type: 'integer' },
    version: { type: 'string' },
    backend: { type: 'string', enum: ['sqlite', 'postgres'] },
    startedAt: { type: 'string', format: 'date-time' },
    beatAt: { type: 'string', format: 'date-time', description: 'Its last heartbeat' },
    beatSeconds: { type: 'integer', description: 'Seconds between heartbeats' },
    stoppedAt: { type: 'string', format: 'date-time', description: 'Set when it stopped cleanly' },
    api: { type: 'string', description: 'Where its API answers' },
    peerUrl: { type: 'string', description: 'Where peer daemons fetch the blobs it holds (--advertise-url)' },
    alive: { type: 'boolean', description: 'Not stopped, and a heartbeat within the last three intervals' },
    leader: {
      type: 'boolean',
      description:
        'Alive and holding the singleton duties (token and lease sweeps, rollout driver, event retention) at its last heartbeat; one daemon at a time',
    },
  },
};

/** The OpenAPI document's part for this route (openapi.ts calls it beside the others). */
export function daemonParts({ schemas, paths }: Parts): void {
  schemas.Daemon = daemonSchema;
  paths[`${API}/daemons`] = {
    get: {
      tags: ['daemons'],
      summary: 'The daemons sharing this inventory, with their heartbeats',
      responses: {
        200: {
          description: 'Daemons, by serverId',
          content: { 'application/json': { schema: { type: 'array', items: ref('Daemon') } } },
        },
        ...errors,
      },
    },
  };
}
