/**
 * The store's settings: where the inventory lives, several daemons on one inventory (issue 17) and when a lease
 * counts as durable; kept apart from config.ts's list so that file
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
    key: 'leaseDurability',
    flag: 'lease-durability',
    env: 'PLINTH_LEASE_DURABILITY',
    schema: z.enum(['disk', 'kernel']).default('disk'),
    help: "When a lease counts as written, so when its ACK leaves (the SQLite store): 'disk' once fdatasynced, it survives a power loss (default); 'kernel' once written to the kernel, it survives the daemon's crash or kill -9 but not a power loss or kernel crash (as Kea's memfile and dnsmasq's lease file): lower ACK latency. On PostgreSQL the commit decides (synchronous_commit)",
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
  {
    key: 'advertiseUrl',
    flag: 'advertise-url',
    env: 'PLINTH_ADVERTISE_URL',
    schema: z
      .string()
      .regex(/^https?:\/\/[^/?#\s]+\/?$/, 'expected http(s)://host:port')
      .optional(),
    help: 'URL the other daemons on the inventory reach this one at, to fetch boot files it holds (default: http://<http-address, or for 0.0.0.0 the advertise address or host name>:<http-port>)',
  },
  {
    key: 'filesOrigin',
    flag: 'files-origin',
    env: 'PLINTH_FILES_ORIGIN',
    schema: z
      .string()
      .regex(/^https?:\/\/\S*\{sha256\}/, 'expected an http(s) URL holding {sha256}')
      .optional(),
    help: 'Where a boot file no daemon holds is fetched from, by digest: an http(s) URL with {sha256} in it (e.g. https://mirror/blobs/{sha256}); the bytes are checked against the digest',
  },
  {
    key: 'heartbeatSeconds',
    flag: 'heartbeat-seconds',
    env: 'PLINTH_HEARTBEAT_SECONDS',
    schema: z.coerce.number().int().min(1).max(300).default(10),
    help: "Seconds between this daemon's heartbeats on a shared inventory; three missed beats list it as not alive, which is when an HA standby takes over its subnets (default 10)",
  },
];

/** The settings above as the daemon reads them (config.ts's Config carries the first two). */
export type ClusterFilesConfig = { advertiseUrl?: string; filesOrigin?: string };
