/**
 * The pieces every settings table is made of (src/config.ts, src/config-cluster.ts, src/power/settings.ts):
 * a setting's shape, and the value types flags, environment variables and config files share.
 */
import { z } from 'zod';

/**
 * Every setting once: its flag, environment variable, file key, type, default and help. Precedence:
 * flag > environment > config file > default. A wrong value stops the daemon with one line naming it.
 */
export type Setting = {
  key: string;
  flag: string;
  env?: string;
  schema: z.ZodType;
  help: string;
  boolean?: boolean;
};

export const port = z.coerce.number().int().min(0).max(65535);
export const bool = z.union([
  z.boolean(),
  z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((s) => ['true', '1', 'yes'].includes(s)),
]);
export const list = z.union([
  z.array(z.string()),
  z.string().transform((s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
  ),
]);
