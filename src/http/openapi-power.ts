import { RolloutSpec } from '../model/rollout.js';
import { API } from './api-prefix.js';
import { errors, idParam, json, type Parts, problem, ref } from './openapi-parts.js';
import { PowerRequest, ReprovisionRequest } from './power-api.js';

/*
 * The OpenAPI document's parts for BMC power control, reprovision and rollouts (power-api.ts, rollouts-api.ts),
 * from the zod schemas that validate their requests.
 */

const ok = (description: string, schema: unknown) => ({ description, content: { 'application/json': { schema } } });
const upstream = { 502: problem, 504: problem };

const ReprovisionState = {
  type: 'object',
  description: 'Where a reprovision is: its current step and each step with the time it began',
  properties: {
    machine: { type: 'string' },
    bootEnv: { type: 'string' },
    step: { enum: ['assign', 'bootdev', 'power', 'dhcp', 'fallback', 'booting', 'done', 'failed'] },
    stepAt: { type: 'string' },
    startedAt: { type: 'string' },
    finishedAt: { type: 'string' },
    reason: { type: 'string' },
    steps: {
      type: 'array',
      items: { type: 'object', properties: { step: { type: 'string' }, at: { type: 'string' } } },
    },
  },
};

const Rollout = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    spec: ref('RolloutSpec'),
    state: { enum: ['running', 'paused', 'rolling-back', 'done', 'failed', 'rolled-back', 'aborted'] },
    reason: { type: 'string' },
    batch: { type: 'integer', description: 'The batch in progress (0-based)' },
    batches: { type: 'integer' },
    nextBatchAt: { type: 'string' },
    machines: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          uuid: { type: 'string' },
          name: { type: 'string' },
          batch: { type: 'integer' },
          previousBootEnv: { type: 'string' },
          result: { enum: ['ok', 'failed', 'rolled-back', 'rollback-failed'] },
          reason: { type: 'string' },
          run: ref('ReprovisionState'),
          rollback: ref('ReprovisionState'),
        },
      },
    },
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
  },
};

export function powerParts({ schemas, paths }: Parts) {
  schemas.PowerRequest = json(PowerRequest);
  schemas.ReprovisionRequest = json(ReprovisionRequest);
  schemas.ReprovisionState = ReprovisionState;
  schemas.RolloutSpec = json(RolloutSpec);
  schemas.Rollout = Rollout;
  const tags = ['power'];
  paths[`${API}/machines/{id}/power`] = {
    parameters: [idParam],
    get: {
      tags,
      summary: "The machine's power state, asked of its BMC",
      responses: {
        200: ok('Power state', {
          type: 'object',
          properties: {
            machine: { type: 'string' },
            name: { type: 'string' },
            driver: { type: 'string' },
            state: { enum: ['on', 'off', 'unknown'] },
          },
        }),
        ...errors,
        ...upstream,
      },
    },
    post: {
      tags,
      summary: 'Power on, off, cycle, reset, or set the next boot device (once or persistent, UEFI or legacy)',
      description:
        "One call at a time per BMC; recorded in the machine's boot timeline and as power.done/power.failed events. `uefi` defaults to the machine's last DHCP client architecture (option 93).",
      requestBody: { required: true, content: { 'application/json': { schema: ref('PowerRequest') } } },
      responses: { 200: ok('Done', { type: 'object', additionalProperties: true }), ...errors, ...upstream },
    },
  };
  paths[`${API}/machines/{id}/actions/reprovision`] = {
    parameters: [idParam],
    post: {
      tags,
      summary: 'Reprovision: assign the bootenv, PXE once, power-cycle, wait for DHCP and the booted callback',
      description:
        'Runs in the background (202); each step goes to the boot timeline and as reprovision.* events. With no DHCP from the machine in time it retries once (off, wait, on), then fails: "BMC ignored the boot override".',
      requestBody: { required: true, content: { 'application/json': { schema: ref('ReprovisionRequest') } } },
      responses: { 202: ok('Started', ref('ReprovisionState')), ...errors },
    },
    get: {
      tags,
      summary: "The machine's latest reprovision outside a rollout (persisted: it survives a restart)",
      responses: { 200: ok('Its state', ref('ReprovisionState')), ...errors },
    },
  };
  rolloutPaths(paths);
}

function rolloutPaths(paths: Parts['paths']) {
  const tags = ['rollouts'];
  paths[`${API}/rollouts`] = {
    get: {
      tags,
      summary: 'Rollouts, newest first',
      responses: { 200: ok('Rollouts', { type: 'array', items: ref('Rollout') }), ...errors },
    },
    post: {
      tags,
      summary: 'Roll a bootenv across the selected machines in batches behind a health gate',
      description:
        'A failed batch stops the rollout; with onFailure rollback its machines are reprovisioned to the bootenv each had before. Progress: rollout.progress events. Survives a daemon restart.',
      requestBody: { required: true, content: { 'application/json': { schema: ref('RolloutSpec') } } },
      responses: { 201: ok('Started', ref('Rollout')), ...errors },
    },
  };
  paths[`${API}/rollouts/{id}`] = {
    parameters: [idParam],
    get: { tags, summary: 'One rollout', responses: { 200: ok('The rollout', ref('Rollout')), ...errors } },
  };
  const verbs = {
    pause: 'Pause before the next batch (the batch in flight finishes)',
    resume: 'Resume a paused rollout',
    abort: 'Abort: no further step; machines mid-reprovision stop waiting',
  };
  for (const [verb, summary] of Object.entries(verbs)) {
    paths[`${API}/rollouts/{id}/${verb}`] = {
      parameters: [idParam],
      post: { tags, summary, responses: { 200: ok('The rollout', ref('Rollout')), ...errors } },
    };
  }
}
