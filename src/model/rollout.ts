import { z } from 'zod';
import type { ReprovisionState } from '../fleet/reprovision.js';
import { Name } from './common.js';

/** Which machines a rollout takes: every condition given must hold (an explicit list alone is just that list). */
export const RolloutSelector = z
  .strictObject({
    machines: z.array(Name).max(10_000).optional().describe('Explicit machine names or uuids'),
    namePattern: z
      .string()
      .min(1)
      .max(128)
      .optional()
      .describe('Shell-style pattern on the machine name: * any run, ? one character'),
    profile: Name.optional().describe('Machines that list this profile'),
    params: z
      .record(z.string().max(128), z.union([z.string(), z.number(), z.boolean()]))
      .optional()
      .describe('Machines whose own params have these values'),
  })
  .refine((s) => s.machines || s.namePattern || s.profile || s.params, {
    message: 'give at least one of machines, namePattern, profile, params',
  });

/** POST /api/v1/rollouts. Durations in seconds. */
export const RolloutSpec = z
  .strictObject({
    selector: RolloutSelector,
    bootEnv: Name.describe('The bootenv every selected machine is reprovisioned to'),
    batchSize: z.int().min(1).max(10_000).optional().describe('Machines per batch'),
    percentage: z.number().gt(0).max(100).optional().describe('Or: the batch as a percentage of the machines'),
    maxUnavailable: z.int().min(1).optional().describe('At most this many machines down at once (default: batch)'),
    healthTimeout: z.int().min(1).max(86_400).default(1800).describe('Seconds for a machine to boot and be healthy'),
    healthUrl: z
      .string()
      .max(2048)
      .regex(/^https?:\/\//, 'an http:// or https:// URL')
      .optional()
      .describe('Polled after the booted callback until it answers 2xx; {address} and {name} are replaced'),
    healthParam: z.string().max(128).optional().describe('Or: healthy once this machine param is set true by the OS'),
    pauseBetween: z.int().min(0).max(86_400).default(0).describe('Seconds to wait between batches'),
    onFailure: z.enum(['stop', 'rollback']).default('stop'),
    dhcpTimeout: z.int().min(1).max(3600).default(300).describe("Seconds from a power action to the machine's DHCP"),
  })
  .refine((s) => !(s.batchSize && s.percentage), { message: 'give batchSize or percentage, not both' });
export type RolloutSpec = z.infer<typeof RolloutSpec>;

export type RolloutState = 'running' | 'paused' | 'rolling-back' | 'done' | 'failed' | 'rolled-back' | 'aborted';

/** One machine of a rollout: its reprovision (and rollback) as persisted before each step acts. */
export type RolloutMachine = {
  uuid: string;
  name: string;
  batch: number;
  previousBootEnv?: string;
  result?: 'ok' | 'failed' | 'rolled-back' | 'rollback-failed';
  reason?: string;
  run?: ReprovisionState;
  rollback?: ReprovisionState;
};

/** The stored rollout (kind `rollouts`), the unit of resume after a restart. */
export type Rollout = {
  id: string;
  spec: RolloutSpec;
  state: RolloutState;
  reason?: string;
  batch: number;
  batches: number;
  /** When the next batch may start (pauseBetween), ISO. */
  nextBatchAt?: string;
  machines: RolloutMachine[];
  createdAt: string;
  updatedAt: string;
};
