/**
 * The boot service an app built alone (buildApp in a test, without the daemon) is given: made as the daemon's
 * bootCore makes it (src/wiring.ts), with the trust rule fed by DHCP evidence on the same bus.
 */
import type { Bus } from '../../src/events.js';
import { type AppOptions, buildApp } from '../../src/http/app.js';
import { bootRecorder } from '../../src/inventory/boots.js';
import { tokenChecker } from '../../src/inventory/tokens.js';
import type { Logger } from '../../src/log.js';
import { bootService } from '../../src/provision/boot.js';
import { dhcpEvidence } from '../../src/provision/evidence.js';
import { trustRule } from '../../src/provision/trust.js';
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
