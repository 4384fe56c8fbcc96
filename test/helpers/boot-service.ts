/**
 * The boot service an app built alone (buildApp in a test, without the daemon) is given: made as the daemon's
 * bootCore makes it (src/wiring.ts), with the trust rule fed by DHCP evidence on the same bus.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Bus, createBus } from '../../src/events.js';
import { type AppOptions, buildApp } from '../../src/http/app.js';
import { bootRecorder } from '../../src/inventory/boots.js';
import { issueToken, newToken, tokenChecker } from '../../src/inventory/tokens.js';
import { type Logger, silentLogger } from '../../src/log.js';
import { bootService } from '../../src/provision/boot.js';
import { dhcpEvidence } from '../../src/provision/evidence.js';
import { trustRule } from '../../src/provision/trust.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

export function testBootService(d: { store: Store; bus: Bus; log: Logger; filesDir: string }) {
  const boots = bootRecorder(d.store);
  const trust = trustRule({ store: d.store, evidence: dhcpEvidence(d.bus), checkToken: tokenChecker(d.store) });
  return bootService({ ...d, boots, trust });
}

/** buildApp as the daemon calls it, for a test that builds the app alone: the boot service made here. */
export function buildTestApp(opts: Omit<AppOptions, 'boot'>) {
  return buildApp({ ...opts, boot: testBootService(opts) });
}

/**
 * An app built alone with an admin token, on a fresh SQLite file or on `over.store` (one a DHCP server under test
 * reads): what a test of the API's rules without the daemon's protocol servers needs. `close()` removes
 * everything it made, and leaves a store it was given open.
 */
export async function adminApp(name: string, over: Partial<Omit<AppOptions, 'boot'>> = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), `plinth-${name}-`));
  const ownStore = !over.store;
  const store = over.store ?? openSqliteStore(path.join(dir, 'plinth.db'));
  const token = newToken();
  await issueToken(store, token, { name: 'admin', role: 'admin', createdAt: new Date().toISOString() });
  const app = await buildTestApp({
    bus: createBus(),
    log: silentLogger,
    dataDir: dir,
    filesDir: dir,
    info: () => ({}),
    version: 'test',
    ...over,
    store,
  });
  await app.ready();
  return {
    app,
    store,
    token,
    dir,
    async close() {
      await app.close();
      if (ownStore) await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
