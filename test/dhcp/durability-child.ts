/** Child process for durability.test.ts: a DHCP server on loopback over a store file, killed with SIGKILL. */

import { startDhcpServer } from '../../src/dhcp/server.js';
import { createBus } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';

const [file, port, clientPort, durability] = process.argv.slice(2);
const store = openSqliteStore(file!, { durability: durability === 'kernel' ? 'kernel' : 'disk' });
await startDhcpServer({
  store,
  bus: createBus(),
  log: silentLogger,
  httpPort: 8080,
  port: Number(port),
  proxyPort: Number(port) + 1,
  clientPort: Number(clientPort),
  serverAddress: '10.99.1.1',
  wildcard: true,
  replyTo: (d) => ({ address: '127.0.0.1', port: d.port }),
});
process.stdout.write('READY\n');
