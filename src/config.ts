import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import { z } from 'zod';
import { CLUSTER_SETTINGS } from './config-cluster.js';
import { bool, list, port, type Setting } from './config-kit.js';
import { POWER_SETTINGS } from './power/settings.js';

export const SETTINGS: Setting[] = [
  {
    key: 'config',
    flag: 'config',
    env: 'PLINTH_CONFIG',
    schema: z.string().optional(),
    help: 'YAML or JSON config file with any of these settings (keys as in camelCase below)',
  },
  {
    key: 'dataDir',
    flag: 'data-dir',
    env: 'PLINTH_DATA_DIR',
    schema: z.string().min(1).default('./var'),
    help: 'Data directory: database, admin.token, uploaded files (default ./var)',
  },
  {
    key: 'httpPort',
    flag: 'http-port',
    env: 'PLINTH_HTTP_PORT',
    schema: port.default(8091),
    help: 'HTTP port for the API, boot scripts and files (default 8091)',
  },
  {
    key: 'httpAddress',
    flag: 'http-address',
    env: 'PLINTH_HTTP_ADDRESS',
    schema: z.string().default('0.0.0.0'),
    help: 'Address the HTTP server listens on (default 0.0.0.0)',
  },
  {
    key: 'tls',
    flag: 'tls',
    env: 'PLINTH_TLS',
    schema: z.enum(['on', 'off']).default('on'),
    help: 'on: the API and /ui over HTTPS on --https-port, the HTTP port keeps only boot files and machine routes; off: everything on plain HTTP (default on)',
  },
  {
    key: 'httpsPort',
    flag: 'https-port',
    env: 'PLINTH_HTTPS_PORT',
    schema: port.default(8443),
    help: 'HTTPS port for the API and /ui when --tls is on (default 8443)',
  },
  {
    key: 'tlsCert',
    flag: 'tls-cert',
    env: 'PLINTH_TLS_CERT',
    schema: z.string().min(1).optional(),
    help: 'PEM certificate (chain) for HTTPS, with --tls-key (default: a self-signed one created in <data-dir>/tls)',
  },
  {
    key: 'tlsKey',
    flag: 'tls-key',
    env: 'PLINTH_TLS_KEY',
    schema: z.string().min(1).optional(),
    help: 'PEM private key of --tls-cert',
  },
  {
    key: 'ipxeHttps',
    flag: 'ipxe-https',
    env: 'PLINTH_IPXE_HTTPS',
    schema: bool.default(false),
    help: 'Chain iPXE to https:// URLs (only for iPXE builds with HTTPS that trust the certificate; default off)',
    boolean: true,
  },
  {
    key: 'httpMaxConnections',
    flag: 'http-max-connections',
    env: 'PLINTH_HTTP_MAX_CONNECTIONS',
    schema: z.coerce.number().int().min(1).max(1_000_000).optional(),
    help: 'Open connections per HTTP(S) listener; more are closed at once (default: a quarter of the open-files limit, at most 4096)',
  },
  {
    key: 'httpMaxConnectionsPerClient',
    flag: 'http-max-connections-per-client',
    env: 'PLINTH_HTTP_MAX_CONNECTIONS_PER_CLIENT',
    schema: z.coerce.number().int().min(1).max(1_000_000).default(64),
    help: 'Open connections per client address and listener (default 64): one host cannot take the whole cap',
  },
  {
    key: 'httpHeadersTimeoutMs',
    flag: 'http-headers-timeout-ms',
    env: 'PLINTH_HTTP_HEADERS_TIMEOUT_MS',
    schema: z.coerce.number().int().min(100).max(600_000).default(10_000),
    help: 'A request whose headers are not complete within this many ms is closed (default 10000)',
  },
  {
    key: 'httpIdleTimeoutMs',
    flag: 'http-idle-timeout-ms',
    env: 'PLINTH_HTTP_IDLE_TIMEOUT_MS',
    schema: z.coerce.number().int().min(100).max(3_600_000).default(60_000),
    help: 'A connection with nothing sent either way for this many ms is closed (default 60000)',
  },
  {
    key: 'httpRequestTimeoutMs',
    flag: 'http-request-timeout-ms',
    env: 'PLINTH_HTTP_REQUEST_TIMEOUT_MS',
    schema: z.coerce.number().int().min(1000).max(86_400_000).default(3_600_000),
    help: 'Longest time to receive a whole request, body included (default 3600000: a large upload on a slow link)',
  },
  {
    key: 'advertiseAddress',
    flag: 'advertise-address',
    env: 'PLINTH_ADVERTISE_ADDRESS',
    schema: z.ipv4().optional(),
    help: 'Address machines reach Plinth at, when it cannot be told from the interface that answered',
  },
  {
    key: 'dhcp',
    flag: 'dhcp',
    env: 'PLINTH_DHCP',
    schema: bool.default(true),
    help: 'Run the DHCP server (--no-dhcp to switch it off). It answers nothing until a subnet exists',
    boolean: true,
  },
  {
    key: 'dhcpPort',
    flag: 'dhcp-port',
    env: 'PLINTH_DHCP_PORT',
    schema: port.default(67),
    help: 'DHCP server port (default 67; needs root or CAP_NET_BIND_SERVICE)',
  },
  {
    key: 'dhcpProxyPort',
    flag: 'dhcp-proxy-port',
    env: 'PLINTH_DHCP_PROXY_PORT',
    schema: port.default(4011),
    help: 'PXE proxyDHCP port (default 4011)',
  },
  {
    key: 'dhcpInterfaces',
    flag: 'dhcp-interfaces',
    env: 'PLINTH_DHCP_INTERFACES',
    schema: list.default([]),
    help: 'Comma-separated interfaces the DHCP server answers on (default: every interface with an address in an enabled subnet)',
  },
  {
    key: 'tftp',
    flag: 'tftp',
    env: 'PLINTH_TFTP',
    schema: bool.default(true),
    help: 'Run the TFTP server (--no-tftp to switch it off)',
    boolean: true,
  },
  {
    key: 'tftpPort',
    flag: 'tftp-port',
    env: 'PLINTH_TFTP_PORT',
    schema: port.default(69),
    help: 'TFTP server port (default 69; needs root or CAP_NET_BIND_SERVICE)',
  },
  {
    key: 'tftpAddress',
    flag: 'tftp-address',
    env: 'PLINTH_TFTP_ADDRESS',
    schema: z.string().default('0.0.0.0'),
    help: 'Address the TFTP server listens on (default 0.0.0.0)',
  },
  {
    key: 'tftpMaxBlksize',
    flag: 'tftp-max-blksize',
    env: 'PLINTH_TFTP_MAX_BLKSIZE',
    schema: z.coerce.number().int().min(512).max(65464).default(1468),
    help: 'Largest TFTP block size granted (default 1468: fits a 1500-byte MTU)',
  },
  {
    key: 'tftpBusyPollUs',
    flag: 'tftp-busy-poll-us',
    env: 'PLINTH_TFTP_BUSY_POLL_US',
    schema: z.coerce.number().int().min(0).max(10000).default(200),
    help: 'After a TFTP send, wait this many microseconds at most by polling (not sleeping) for a client that answers that fast (default 200; 0 = off)',
  },
  {
    key: 'tftpMaxTransfers',
    flag: 'tftp-max-transfers',
    env: 'PLINTH_TFTP_MAX_TRANSFERS',
    schema: z.coerce.number().int().min(1).max(100_000).default(1024),
    help: 'TFTP transfers in flight in all (default 1024): each holds a socket; past it a never-answered one gives way',
  },
  {
    key: 'tftpMaxPerClient',
    flag: 'tftp-max-per-client',
    env: 'PLINTH_TFTP_MAX_PER_CLIENT',
    schema: z.coerce.number().int().min(1).max(100_000).default(256),
    help: 'TFTP transfers in flight per client address (default 256)',
  },
  {
    key: 'tftpMaxTimeout',
    flag: 'tftp-max-timeout',
    env: 'PLINTH_TFTP_MAX_TIMEOUT',
    schema: z.coerce.number().int().min(1).max(255).default(10),
    help: 'Largest RFC 2349 timeout (seconds) granted to a client; a larger one is left out of the OACK (default 10)',
  },
  {
    key: 'tftpUnansweredRetries',
    flag: 'tftp-unanswered-retries',
    env: 'PLINTH_TFTP_UNANSWERED_RETRIES',
    schema: z.coerce.number().int().min(0).max(10).default(2),
    help: 'Resends of a first OACK/DATA the client never answered before the transfer is dropped (default 2)',
  },
  {
    key: 'tftpUploadDir',
    flag: 'tftp-upload-dir',
    env: 'PLINTH_TFTP_UPLOAD_DIR',
    schema: z.string().optional(),
    help: 'Accept TFTP WRQ uploads into this directory (default: refused)',
  },
  {
    key: 'metricsPublic',
    flag: 'metrics-public',
    env: 'PLINTH_METRICS_PUBLIC',
    schema: bool.default(false),
    help: 'Serve /metrics without a token (default off: a viewer token or better)',
    boolean: true,
  },
  {
    key: 'trustEvidenceSeconds',
    flag: 'trust-evidence-seconds',
    env: 'PLINTH_TRUST_EVIDENCE_SECONDS',
    schema: z.coerce.number().int().min(10).max(86_400).default(600),
    help: "How long this daemon's DHCP ACK binding a MAC to an address marks requests from that address as the machine (default 600)",
  },
  {
    key: 'discoveryMaxUnclaimed',
    flag: 'discovery-max-unclaimed',
    env: 'PLINTH_DISCOVERY_MAX_UNCLAIMED',
    schema: z.coerce.number().int().min(0).max(1_000_000).default(1000),
    help: 'Discovered machines still on the unknown bootenv beyond which no new one is created (default 1000)',
  },
  ...POWER_SETTINGS,
  {
    key: 'assetsDir',
    flag: 'assets-dir',
    env: 'PLINTH_ASSETS_DIR',
    schema: z.string().default('./assets'),
    help: 'Boot loaders (undionly.kpxe, ipxe.efi, snponly.efi) served over TFTP and HTTP (default ./assets)',
  },
  {
    key: 'loaderSearch',
    flag: 'loader-search',
    env: 'PLINTH_LOADER_SEARCH',
    schema: list.default(['/usr/lib/ipxe', '/boot/ipxe.efi', '/usr/share/ipxe']),
    help: "Where boot loaders missing from --assets-dir are looked for, comma-separated directories or files (default the distribution's iPXE: /usr/lib/ipxe,/boot/ipxe.efi,/usr/share/ipxe)",
  },
  {
    key: 'bootenvsDir',
    flag: 'bootenvs-dir',
    env: 'PLINTH_BOOTENVS_DIR',
    schema: z.string().default('./bootenvs'),
    help: 'Shipped boot environments (*.yaml) loaded at start (default ./bootenvs)',
  },
  {
    key: 'logLevel',
    flag: 'log-level',
    env: 'PLINTH_LOG_LEVEL',
    schema: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    help: 'trace, debug, info, warn, error, fatal or silent (default info)',
  },
  ...CLUSTER_SETTINGS,
];

export type Config = {
  config?: string;
  dataDir: string;
  httpPort: number;
  httpAddress: string;
  advertiseAddress?: string;
  /** Absent (a Config built in code, as tests do): plain HTTP only, as `off`. */
  tls?: 'on' | 'off';
  httpsPort?: number;
  tlsCert?: string;
  tlsKey?: string;
  ipxeHttps?: boolean;
  /** Absent: derived from the open-files limit (see src/http/listeners.ts). */
  httpMaxConnections?: number;
  httpMaxConnectionsPerClient?: number;
  httpHeadersTimeoutMs?: number;
  httpIdleTimeoutMs?: number;
  httpRequestTimeoutMs?: number;
  dhcp: boolean;
  dhcpPort: number;
  dhcpProxyPort: number;
  dhcpInterfaces: string[];
  tftp: boolean;
  tftpPort: number;
  tftpAddress: string;
  tftpMaxBlksize: number;
  tftpBusyPollUs: number;
  tftpUploadDir?: string;
  /** Absent in a Config built in code (tests): the server's defaults. */
  tftpMaxTransfers?: number;
  tftpMaxPerClient?: number;
  tftpMaxTimeout?: number;
  tftpUnansweredRetries?: number;
  metricsPublic?: boolean;
  trustEvidenceSeconds?: number;
  discoveryMaxUnclaimed?: number;
  powerConcurrency?: number;
  powerTimeout?: number;
  assetsDir: string;
  /** Absent in a Config built in code (tests): the distribution's iPXE locations. */
  loaderSearch?: string[];
  bootenvsDir: string;
  logLevel: string;
  store?: string; // a postgres:// URL (issue 17); absent: the SQLite file in the data dir
  /** When a lease write is durable on the SQLite store (config-cluster.ts); absent in a Config built in code: disk. */
  leaseDurability?: 'disk' | 'kernel';
  serverId?: string;
  /** The URL peer daemons fetch this daemon's blobs at (issue 17, src/files/peers.ts). */
  advertiseUrl?: string;
  /** An http(s) URL with `{sha256}` a blob missing everywhere is fetched from. */
  filesOrigin?: string;
  /** Seconds between heartbeats (absent in a Config built in code: 10). */
  heartbeatSeconds?: number;
};

export class ConfigError extends Error {}

export function helpText(): string {
  const lines = [
    'Usage: plinth [serve] [options]',
    '',
    'Plinth: DHCP, TFTP, HTTP boot and a REST inventory for bare-metal provisioning.',
    '',
    'Options (flag / environment variable):',
  ];
  for (const s of SETTINGS) {
    const flag = s.boolean ? `--${s.flag}, --no-${s.flag}` : `--${s.flag} VALUE`;
    lines.push(`  ${flag.padEnd(30)} ${s.env ?? ''}`);
    lines.push(`      ${s.help}`);
  }
  lines.push(`  ${'--help'.padEnd(30)}`, '      Show this help', '');
  lines.push(
    'Environment only: PLINTH_ADMIN_TOKEN  accept this admin token (instead of creating <data-dir>/admin.token)',
  );
  return lines.join('\n');
}

/** Parse argv + env + file into a validated Config; throws ConfigError with one line that names the setting. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Config | 'help' {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const s of SETTINGS) {
    options[s.flag] = { type: s.boolean ? 'boolean' : 'string' };
    if (s.boolean) options[`no-${s.flag}`] = { type: 'boolean' };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message.split('\n')[0]} (see plinth serve --help)`);
  }
  if (parsed.values.help) return 'help';
  const pos = parsed.positionals;
  if (pos.length > 1 || (pos.length === 1 && pos[0] !== 'serve')) {
    throw new ConfigError(`unexpected argument '${pos.join(' ')}' (see plinth serve --help)`);
  }
  const fromFlags: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const v = parsed.values[s.flag];
    if (v !== undefined) fromFlags[s.key] = v;
    if (s.boolean && parsed.values[`no-${s.flag}`]) fromFlags[s.key] = false;
  }
  const file = (fromFlags.config as string | undefined) ?? env.PLINTH_CONFIG;
  let fromFile: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(
        `config: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    try {
      const doc = YAML.parse(text) ?? {};
      if (typeof doc !== 'object' || Array.isArray(doc)) throw new Error('expected a mapping of settings');
      fromFile = doc as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`config: ${file} is not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`);
    }
    const known = new Set(SETTINGS.map((s) => s.key));
    for (const k of Object.keys(fromFile)) {
      if (!known.has(k))
        throw new ConfigError(`config: unknown setting '${k}' in ${file} (known: ${[...known].join(', ')})`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    let raw: unknown;
    let where: string;
    if (s.key in fromFlags) {
      raw = fromFlags[s.key];
      where = `--${s.flag}`;
    } else if (s.env && env[s.env] !== undefined && env[s.env] !== '') {
      raw = env[s.env];
      where = s.env;
    } else if (s.key in fromFile) {
      raw = fromFile[s.key];
      where = `${s.key} in ${file}`;
    } else {
      raw = undefined;
      where = `--${s.flag}`;
    }
    const r = s.schema.safeParse(raw);
    if (!r.success) {
      throw new ConfigError(
        `${where}: ${JSON.stringify(raw)} is not allowed: ${s.help.split(' (')[0]!.toLowerCase()}; ${r.error.issues[0]?.message ?? ''}`,
      );
    }
    out[s.key] = r.data;
  }
  if (Boolean(out.tlsCert) !== Boolean(out.tlsKey))
    throw new ConfigError(
      `${out.tlsCert ? '--tls-cert' : '--tls-key'} needs ${out.tlsCert ? '--tls-key' : '--tls-cert'} too (PLINTH_TLS_CERT and PLINTH_TLS_KEY): give both files, or neither for a self-signed certificate`,
    );
  if (out.tls === 'off' && out.tlsCert) throw new ConfigError('--tls-cert is given but --tls is off: drop one of them');
  if (out.tls === 'off' && out.ipxeHttps)
    throw new ConfigError('--ipxe-https needs --tls on (there is no HTTPS listener to chain to)');
  if (out.tls === 'on' && out.httpsPort === out.httpPort && out.httpPort !== 0)
    throw new ConfigError(`--https-port and --http-port are both ${out.httpPort}: give them different ports`);
  return out as Config;
}
