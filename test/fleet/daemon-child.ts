/**
 * A daemon child for the kill -9 rollout test: DHCP on loopback ports and the fake HTTP BMC's driver, both from
 * the environment. Prints READY when it listens.
 */
import { startDaemon } from '../../src/daemon.js';
import { createLogger } from '../../src/log.js';
import { testConfig } from '../helpers/daemon.js';
import { httpBmcDrivers } from './sim.js';

const env = (k: string) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const n = (k: string) => Number(env(k));
const daemon = await startDaemon(
  testConfig(env('FLEET_DATA_DIR'), {
    httpPort: n('FLEET_HTTP_PORT'),
    dhcp: true,
    dhcpPort: n('FLEET_DHCP_PORT'),
    dhcpProxyPort: n('FLEET_PROXY_PORT'),
  }),
  createLogger('warn'),
  {},
  {
    dhcp: {
      wildcard: true,
      clientPort: n('FLEET_CLIENT_PORT'),
      relayPort: n('FLEET_RELAY_PORT'),
      replyTo: (d) => ({ address: '127.0.0.1', port: d.port }),
    },
    drivers: httpBmcDrivers(env('FLEET_BMC_URL')),
  },
);
process.stdout.write(`READY ${daemon.httpPort}\n`);
process.on('SIGTERM', () => void daemon.close().then(() => process.exit(0)));
