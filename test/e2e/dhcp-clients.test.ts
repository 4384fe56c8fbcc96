/**
 * Plinth's DHCP server against real clients, in namespaces:
 *
 *   plinth-dhcp-srv: br0 10.99.31.1/24 (subnet a), br1 10.99.32.1/24 (subnet b), Plinth on br0+br1
 *   plinth-dhcp-c0:  eth0, eth1, eth2 on br0      plinth-dhcp-c1: eth0 on br1
 *   plinth-dhcp-rel: up0 10.99.31.2 on br0, down0 10.99.33.1 -> plinth-dhcp-rc: eth0 (dhcrelay between)
 *
 * Proves: SO_BINDTODEVICE (each bridge answered from its own subnet by one server), dhclient and udhcpc
 * DORA/renew/release, a reservation, two clients never sharing, a relay (dhcrelay, giaddr), rogue detection.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { ensureAddon } from '../dhcp/addon.js';
import { addBridge, addNamespace, addVeth, deleteNamespaces, ipn, type Proc, runIn, startIn } from './dhcp-netns.js';

const SRV = 'plinth-dhcp-srv';
const C0 = 'plinth-dhcp-c0';
const C1 = 'plinth-dhcp-c1';
const REL = 'plinth-dhcp-rel';
const RC = 'plinth-dhcp-rc';
const ALL = [SRV, C0, C1, REL, RC];
const root = fileURLToPath(new URL('../../', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-e2e-'));
const dbFile = path.join(tmp, 'plinth.db');
const procs: Proc[] = [];

const subnet = (name: string, net: string, extra: Record<string, unknown> = {}) => ({
  name,
  subnet: `${net}.0/24`,
  activeStart: `${net}.100`,
  activeEnd: `${net}.199`,
  leaseTime: 600,
  options: [{ code: 3, value: `${net}.1` }],
  ...extra,
});

// udhcpc runs this script: configures the address (so renewals are real unicasts) and logs each event.
const script = path.join(tmp, 'udhcpc.sh');
writeFileSync(
  script,
  `#!/bin/sh
echo "$1 ip=$ip mask=$mask serverid=$serverid" >> ${tmp}/udhcpc-$interface-$(ip netns identify).log
case "$1" in
  bound|renew) ip addr flush dev $interface; ip addr add $ip/$mask dev $interface ;;
  deconfig) ip addr flush dev $interface ;;
esac
exit 0
`,
  { mode: 0o755 },
);

// dhclient runs this one (never dhclient-script: it would rewrite the host's /etc/resolv.conf).
const dscript = path.join(tmp, 'dhclient.sh');
writeFileSync(
  dscript,
  `#!/bin/sh
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT) ip addr flush dev $interface; ip addr add $new_ip_address/$new_subnet_mask dev $interface ;;
  RELEASE|EXPIRE|FAIL|STOP) ip addr flush dev $interface ;;
esac
exit 0
`,
  { mode: 0o755 },
);

/**
 * The server's lease journal applies to the database file about every 50 ms (src/store/journal.ts); this test reads
 * the file from another connection, which sees a lease once it is applied: wait until what it reads satisfies `ok`.
 */
async function leaseUntil(mac: string, ok: (l: Record<string, string>[]) => boolean) {
  const end = Date.now() + 10_000;
  let l = await leaseOf(mac);
  while (!ok(l) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    l = await leaseOf(mac);
  }
  return l;
}
const POLL = { timeout: 10_000, interval: 100 };
async function leaseOf(mac: string) {
  const s = openSqliteStore(dbFile);
  try {
    return (await s.list('leases')).items.map((i) => i.doc as Record<string, string>).filter((d) => d.mac === mac);
  } finally {
    await s.close();
  }
}
const dhclient = (ns: string, ifname: string, extra: string[] = []) =>
  runIn(
    ns,
    [
      'dhclient',
      '-4',
      '-v',
      '-1',
      '-sf',
      dscript,
      '-lf',
      path.join(tmp, `${ns}-${ifname}.leases`),
      '-pf',
      path.join(tmp, `${ns}-${ifname}.pid`),
      ...extra,
      ifname,
    ],
    40_000,
  );
const boundAddr = (out: string) => /bound to ([\d.]+)/.exec(out)?.[1];

beforeAll(async () => {
  if (!ensureAddon())
    throw new Error('the native socket helper could not be built: npm run build:native (needs g++, make, python3)');
  deleteNamespaces(ALL);
  for (const n of ALL) addNamespace(n);
  addBridge(SRV, 'br0', '10.99.31.1/24');
  addBridge(SRV, 'br1', '10.99.32.1/24');
  for (const i of [0, 1, 2])
    addVeth({ ns: SRV, ifname: `c0p${i}`, bridge: 'br0' }, { ns: C0, ifname: `eth${i}`, mac: `52:54:00:31:00:0${i}` });
  addVeth({ ns: SRV, ifname: 'c1p0', bridge: 'br1' }, { ns: C1, ifname: 'eth0', mac: '52:54:00:32:00:00' });
  addVeth({ ns: SRV, ifname: 'relp', bridge: 'br0' }, { ns: REL, ifname: 'up0', cidr: '10.99.31.2/24' });
  addVeth({ ns: REL, ifname: 'down0', cidr: '10.99.33.1/24' }, { ns: RC, ifname: 'eth0', mac: '52:54:00:33:00:00' });
  ipn(SRV, 'route', 'add', '10.99.33.0/24', 'via', '10.99.31.2');

  const cfg = {
    store: dbFile,
    interfaces: ['br0', 'br1'],
    subnets: [subnet('a', '10.99.31'), subnet('b', '10.99.32'), subnet('r', '10.99.33', { activeEnd: '10.99.33.150' })],
    reservations: [{ address: '10.99.31.50', mac: '52:54:00:31:00:01', subnet: 'a' }],
  };
  writeFileSync(path.join(tmp, 'cfg.json'), JSON.stringify(cfg));
  procs.push(
    await startIn(
      SRV,
      [process.execPath, '--import', 'tsx', path.join(root, 'test/e2e/dhcp-run.ts'), path.join(tmp, 'cfg.json')],
      (o) => o.includes('READY'),
      30_000,
    ),
  );
});

afterAll(async () => {
  for (const p of procs.reverse()) await p.stop();
  // dhclient daemonizes: stop the ones we started by the PID files they wrote.
  for (const f of ['plinth-dhcp-c0-eth0', 'plinth-dhcp-c0-eth1', 'plinth-dhcp-c0-eth2', 'plinth-dhcp-c1-eth0']) {
    try {
      const pid = Number(readFileSync(path.join(tmp, `${f}.pid`), 'utf8').trim());
      if (pid > 1) process.kill(pid, 'SIGKILL');
    } catch {
      // not running
    }
  }
  deleteNamespaces(ALL);
  rmSync(tmp, { recursive: true, force: true });
});

describe('DHCP e2e with real clients', () => {
  it('one server, two bridges: each client gets an address from its own subnet (SO_BINDTODEVICE)', async () => {
    const a = await dhclient(C0, 'eth0');
    const b = await dhclient(C1, 'eth0');
    expect(boundAddr(a.out), a.out).toMatch(/^10\.99\.31\.1\d\d$/);
    expect(boundAddr(b.out), b.out).toMatch(/^10\.99\.32\.1\d\d$/);
    await expect
      .poll(() => leaseOf('52:54:00:31:00:00'), POLL)
      .toMatchObject([{ state: 'bound', subnet: 'a', address: boundAddr(a.out) }]);
  });

  it('dhclient: a reservation gives the reserved address; a second client never gets the first one', async () => {
    const r = await dhclient(C0, 'eth1');
    expect(boundAddr(r.out), r.out).toBe('10.99.31.50');
    const other = await dhclient(C0, 'eth2');
    const first = (await leaseOf('52:54:00:31:00:00'))[0]!.address;
    expect(boundAddr(other.out)).toMatch(/^10\.99\.31\./);
    expect(boundAddr(other.out)).not.toBe(first);
    expect(boundAddr(other.out)).not.toBe('10.99.31.50');
  });

  it('dhclient: release (-r) marks the lease released; the next run gets the same address back', async () => {
    const before = (await leaseUntil('52:54:00:31:00:02', (l) => l[0]?.state === 'bound'))[0]!.address;
    const rel = await dhclient(C0, 'eth2', ['-r']);
    expect(rel.code).toBe(0);
    await expect
      .poll(async () => (await leaseOf('52:54:00:31:00:02'))[0], POLL)
      .toMatchObject({ state: 'released', address: before });
    const again = await dhclient(C0, 'eth2');
    expect(boundAddr(again.out)).toBe(before);
  });

  it('udhcpc: DORA, renew (unicast, ciaddr) and release', async () => {
    const p = await startIn(
      C1,
      ['udhcpc', '-i', 'eth0', '-f', '-t', '5', '-T', '2', '-s', script, '-x', 'hostname:c1'],
      (o) => /lease of [\d.]+ obtained/.test(o),
      30_000,
    );
    procs.push(p);
    const addr = /lease of ([\d.]+) obtained/.exec(p.out())![1]!;
    expect(addr).toMatch(/^10\.99\.32\.1\d\d$/);
    // dhclient bound this MAC with hostname "vm" in the first test: wait for udhcpc's own lease.
    const before = (await leaseUntil('52:54:00:32:00:00', (l) => l[0]?.hostname === 'c1'))[0]!;
    expect(before).toMatchObject({ state: 'bound', hostname: 'c1' });
    await new Promise((r) => setTimeout(r, 1100)); // expiresAt moves on by at least a second
    p.child.kill('SIGUSR1'); // renew: a unicast REQUEST with ciaddr set
    const end = Date.now() + 10_000;
    while (!/sending renew[\s\S]*lease of [\d.]+ obtained/.test(p.out()) && Date.now() < end)
      await new Promise((r) => setTimeout(r, 100));
    expect(p.out()).toMatch(/sending renew/);
    const later = (l: Record<string, string>[]) => Date.parse(l[0]?.expiresAt ?? '') > Date.parse(before.expiresAt!);
    const renewed = (await leaseUntil('52:54:00:32:00:00', later))[0]!;
    expect(renewed.address).toBe(addr);
    expect(Date.parse(renewed.expiresAt!)).toBeGreaterThan(Date.parse(before.expiresAt!));
    p.child.kill('SIGUSR2'); // release
    const end2 = Date.now() + 5000;
    while ((await leaseOf('52:54:00:32:00:00'))[0]!.state !== 'released' && Date.now() < end2)
      await new Promise((r) => setTimeout(r, 100));
    expect((await leaseOf('52:54:00:32:00:00'))[0]!.state).toBe('released');
    await p.stop();
  });

  it('a relay (dhcrelay, giaddr 10.99.33.1) gets an address from the relay subnet for its client', async () => {
    const relay = await startIn(
      REL,
      ['dhcrelay', '-4', '-d', '-id', 'down0', '-iu', 'up0', '10.99.31.1'],
      (o) => /Sending on\s+Socket/.test(o),
      10_000,
    );
    procs.push(relay);
    const c = await runIn(RC, ['udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '5', '-T', '2', '-s', script], 30_000);
    expect(c.out).toMatch(/lease of 10\.99\.33\.1\d\d obtained/);
    await expect.poll(() => leaseOf('52:54:00:33:00:00'), POLL).toMatchObject([{ subnet: 'r', state: 'bound' }]);
    await relay.stop();
  });

  it('notices another DHCP server on a served segment (dhcp.rogue)', async () => {
    // A forgotten dnsmasq in client namespace c1, answering on the br1 segment.
    ipn(C1, 'addr', 'flush', 'dev', 'eth0');
    ipn(C1, 'addr', 'add', '10.99.32.9/24', 'dev', 'eth0');
    const rogue = await startIn(
      C1,
      [
        'dnsmasq',
        '-k',
        '--conf-file=/dev/null',
        '--port=0',
        '--interface=eth0',
        '--bind-interfaces',
        '--no-ping',
        '--dhcp-range=10.99.32.20,10.99.32.30,1h',
        `--dhcp-leasefile=${tmp}/rogue.leases`,
        `--pid-file=${tmp}/rogue.pid`,
        '--log-dhcp',
        '--log-facility=-',
      ],
      (o) => /DHCP, IP range/.test(o),
      10_000,
    );
    procs.push(rogue);
    addVeth({ ns: SRV, ifname: 'c1p1', bridge: 'br1' }, { ns: C1, ifname: 'eth1', mac: '52:54:00:32:00:01' });
    // -B: broadcast flag, so the rogue OFFER is broadcast (a unicast one to the client's MAC never reaches us).
    await runIn(C1, ['udhcpc', '-B', '-i', 'eth1', '-n', '-q', '-f', '-t', '3', '-T', '1', '-s', '/bin/true'], 20_000);
    const server = procs[0]!;
    const end = Date.now() + 5000;
    while (!/dhcp\.rogue/.test(server.out()) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    expect(server.out()).toMatch(/"type":"dhcp.rogue","key":"10.99.32.9"/);
    await rogue.stop();
  });
});
