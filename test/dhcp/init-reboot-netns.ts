/**
 * INIT-REBOOT with a real client (issue 13, RFC 2131 4.3.2), for src/dhcp/README.md; not part of the unit suite
 * (root, dhclient):
 *   node --import tsx test/dhcp/init-reboot-netns.ts
 * A server namespace serves 10.97.0.0/24 (pool .100-.110) on a bridge; in the client namespace dhclient starts
 * with a lease another server gave (10.97.0.150 from 10.97.0.5), so it sends an INIT-REBOOT REQUEST Plinth has
 * no record of: Plinth must stay silent (a NAK would take that server's address away), and dhclient goes on to
 * DISCOVER after its reboot timeout. Then dhclient starts again with the lease Plinth gave: INIT-REBOOT, ACK.
 * Bounded: two dhclient runs of at most 60 s. Namespaces plinth-dhcp-irs and plinth-dhcp-irc, deleted at the end.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addBridge, addNamespace, addVeth, deleteNamespaces, runIn, startIn } from '../e2e/dhcp-netns.js';

const SRV = 'plinth-dhcp-irs';
const CL = 'plinth-dhcp-irc';
const root = fileURLToPath(new URL('../../', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-initreboot-'));

const otherServersLease = `lease {
  interface "eth0";
  fixed-address 10.97.0.150;
  option subnet-mask 255.255.255.0;
  option dhcp-lease-time 86400;
  option dhcp-server-identifier 10.97.0.5;
  renew 4 2037/01/01 00:00:00;
  rebind 4 2037/01/01 00:00:00;
  expire 4 2037/01/01 00:00:00;
}
`;

async function dhclient(lf: string) {
  const t = Date.now();
  const pf = path.join(tmp, 'dhclient.pid');
  const r = await runIn(CL, ['dhclient', '-4', '-v', '-1', '-sf', '/bin/true', '-lf', lf, '-pf', pf, 'eth0'], 70_000);
  await runIn(CL, ['sh', '-c', `kill $(cat ${pf}) 2>/dev/null; true`]);
  const lines = r.out.split('\n').filter((l) => /^DHCP(REQUEST|DISCOVER|OFFER|ACK|NAK)|bound to/.test(l));
  return { ms: Date.now() - t, bound: /bound to ([\d.]+)/.exec(r.out)?.[1], nak: /DHCPNAK/.test(r.out), lines };
}

try {
  deleteNamespaces([SRV, CL]);
  addNamespace(SRV);
  addNamespace(CL);
  addBridge(SRV, 'br0', '10.97.0.1/24');
  addVeth({ ns: SRV, ifname: 'ip0', bridge: 'br0' }, { ns: CL, ifname: 'eth0', mac: '52:54:00:97:00:01' });
  const cfg = {
    store: path.join(tmp, 'plinth.db'),
    interfaces: ['br0'],
    subnets: [
      {
        name: 'r',
        subnet: '10.97.0.0/24',
        activeStart: '10.97.0.100',
        activeEnd: '10.97.0.110',
        leaseTime: 600,
        options: [],
      },
    ],
    logLevel: 'warn',
  };
  writeFileSync(path.join(tmp, 'cfg.json'), JSON.stringify(cfg));
  const srv = await startIn(
    SRV,
    [process.execPath, '--import', 'tsx', path.join(root, 'test/e2e/dhcp-run.ts'), path.join(tmp, 'cfg.json')],
    (o) => o.includes('READY'),
    30_000,
  );
  try {
    const lf = path.join(tmp, 'eth0.leases');
    writeFileSync(lf, otherServersLease);
    console.log("another server's lease (no record here):", JSON.stringify(await dhclient(lf), null, 1));
    await runIn(CL, ['ip', 'addr', 'flush', 'dev', 'eth0']);
    console.log('its lease from Plinth:', JSON.stringify(await dhclient(lf), null, 1));
  } finally {
    await srv.stop();
  }
} finally {
  deleteNamespaces([SRV, CL]);
  rmSync(tmp, { recursive: true, force: true });
}
