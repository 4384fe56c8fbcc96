/**
 * The settings for several daemons on one inventory (issue 17), kept apart from config.ts's list so that file
 * stays within its size limit; config.ts spreads them into SETTINGS, so flags, environment, file and help work
 * the same as for every other setting.
 */
import { z } from 'zod';

export const CLUSTER_SETTINGS = [
  {
    key: 'store',
    flag: 'store',
    env: 'PLINTH_STORE_URL',
    schema: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// URL')
      .optional(),
    help: 'Inventory database: a postgres://user:password@host:port/db URL shared by several daemons (default: the SQLite file <data-dir>/plinth.db)',
  },
  {
    key: 'serverId',
    flag: 'server-id',
    env: 'PLINTH_SERVER_ID',
    schema: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'letters, digits, dot, dash, underscore; at most 63')
      .optional(),
    help: "This daemon's name among several on one inventory, recorded with what it writes (default: the host name)",
  },
];
