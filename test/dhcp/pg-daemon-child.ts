/**
 * Child process for pg-daemons.test.ts and owners-pg.test.ts: a DHCP server on loopback over a PostgreSQL schema,
 * killed with SIGKILL. Given a serverId (owners-pg), it also beats in the daemons list every second (stale 3 s
 * after a SIGKILL) and reads the live daemons every 200 ms, for subnet owners.
 */

import { startRegistry } from '../../src/daemon-registry.js';
import { startDhcpServer } from '../../src/dhcp/server.js';
import { createBus } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import { openPgStore } from '../../src/store/pg.js';

const [url, schema, port, relayPort, serverAddress, serverId] = process.argv.slice(2);
const store = await openPgStore(url!, { schema, serverId: serverId ?? serverAddress });
if (serverId) await startRegistry(store, { serverId, version: 'test', backend: store.backend }, silentLogger, 1);
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
  ...(serverId ? { serverId, ownersRefreshMs: 200 } : {}),
  wildcard: true,
  replyTo: (d) => ({ address: '127.0.0.1', port: d.port }),
});
process.stdout.write('READY\n');
