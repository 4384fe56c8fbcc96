/**
 * Child process for owners-pg.test.ts: one daemon's DHCP server and heartbeat (beat every second, so its heartbeat
 * is stale 3 s after a SIGKILL) over a PostgreSQL schema, on loopback, under its own serverId.
 */

import { startRegistry } from '../../src/daemon-registry.js';
import { startDhcpServer } from '../../src/dhcp/server.js';
import { createBus } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import { openPgStore } from '../../src/store/pg.js';

const [url, schema, port, relayPort, serverAddress, serverId] = process.argv.slice(2);
const store = await openPgStore(url!, { schema, serverId });
await startRegistry(store, { serverId: serverId!, version: 'test', backend: store.backend }, silentLogger, 1);
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
  serverId,
  ownersRefreshMs: 200,
  wildcard: true,
  replyTo: (d) => ({ address: '127.0.0.1', port: d.port }),
});
process.stdout.write('READY\n');
