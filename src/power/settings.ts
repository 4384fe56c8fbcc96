/**
 * The power service's daemon settings, listed by src/config.ts with the others (flag, environment variable, file
 * key): how many BMC calls run at once, and how long one may take. Kept here, next to the service they tune.
 */
import { z } from 'zod';

export const POWER_SETTINGS = [
  {
    key: 'powerConcurrency',
    flag: 'power-concurrency',
    env: 'PLINTH_POWER_CONCURRENCY',
    schema: z.coerce.number().int().min(1).max(1024).default(16),
    help: 'BMC calls in flight at once, all BMCs together; each BMC always gets one at a time (default 16)',
  },
  {
    key: 'powerTimeout',
    flag: 'power-timeout',
    env: 'PLINTH_POWER_TIMEOUT',
    schema: z.coerce.number().int().min(1).max(3600).default(30),
    help: 'Seconds one BMC operation (a power change with its read-back, a boot device) may take (default 30)',
  },
];

/** Absent in a Config built in code (tests): the service's defaults. */
export type PowerConfig = { powerConcurrency?: number; powerTimeout?: number };

/** The power service's options from the daemon's settings. */
export const powerOptions = (c: PowerConfig) => ({
  ...(c.powerConcurrency !== undefined ? { maxConcurrent: c.powerConcurrency } : {}),
  ...(c.powerTimeout !== undefined ? { timeoutMs: c.powerTimeout * 1000 } : {}),
});
