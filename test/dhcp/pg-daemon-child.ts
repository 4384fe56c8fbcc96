/** Child process for pg-daemons.test.ts: a DHCP server on loopback over a PostgreSQL schema, killed with SIGKILL. */

import { startDhcpServer } from '../../src/dhcp/server.js';
import { createBus } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import { openPgStore } from '../../src/store/pg.js';

const [url, schema, port, relayPort, serverAddress] = process.argv.slice(2);
const store = await openPgStore(url!, { schema, serverId: serverAddress });
await startDhcpServer({
  store,
  bus: createBus(),
  log: silentLogger,
  httpPort: 8080,
  port: Number(port),
  proxyPort: Number(port) + 1,
  clientPort: Number(port) + 2,
  relayPort: Number(relayPort),
  serverAddress,
  wildcard: true,
  replyTo: (d) => ({ address: '127.0.0.1', port: d.port }),
});
process.stdout.write('READY\n');
