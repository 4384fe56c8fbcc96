/**
 * A daemon child for the kill -9 rollout tests: DHCP on loopback ports and the fake HTTP BMC's driver, both from
 * the environment; with FLEET_STORE a PostgreSQL inventory (FLEET_SERVER_ID, FLEET_ADMIN_TOKEN), for several
 * daemons on one. Prints READY when it listens.
 */
import { startDaemon } from '../../src/daemon.js';
import { createLogger } from '../../src/log.js';
import { fleetDaemonConfig, fleetDaemonOptions } from './sim.js';

const env = (k: string) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const n = (k: string) => Number(env(k));
const p = {
  port: n('FLEET_DHCP_PORT'),
  proxyPort: n('FLEET_PROXY_PORT'),
  clientPort: n('FLEET_CLIENT_PORT'),
  relayPort: n('FLEET_RELAY_PORT'),
};
const daemon = await startDaemon(
  fleetDaemonConfig(env('FLEET_DATA_DIR'), p, {
    httpPort: n('FLEET_HTTP_PORT'),
    ...(process.env.FLEET_STORE ? { store: process.env.FLEET_STORE, serverId: process.env.FLEET_SERVER_ID } : {}),
  }),
  createLogger('warn'),
  process.env.FLEET_ADMIN_TOKEN ? { PLINTH_ADMIN_TOKEN: process.env.FLEET_ADMIN_TOKEN } : {},
  fleetDaemonOptions(p, env('FLEET_BMC_URL')),
);
process.stdout.write(`READY ${daemon.httpPort}\n`);
process.on('SIGTERM', () => void daemon.close().then(() => process.exit(0)));
