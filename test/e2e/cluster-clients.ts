/**
 * The cluster test's clients (cluster.test.ts): perfdhcp as a relay (giaddr = its own address) for load, dhcrelay
 * in front of real dhclients, an SSE subscriber; and what each of them was ACKed, parsed from their own output
 * (never from the daemons'), so the test can hold the database to what clients were actually told.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type NsProcess, spawnIn } from '../../src/lab/netns.js';
import { idx, NS, perfAddr, type Rack, TOKEN } from './cluster-net.js';
import { type Proc, runIn, startIn } from './dhcp-netns.js';

/** One address a client was ACKed: by whom it was told (its own log) and in which subnet. */
export type Ack = { subnet: string; mac: string; address: string; from: string };

/** perfdhcp's MAC base: the same in every rack, so the racks' clients overlap. */
const MAC_BASE = '02:c1:00:00:00:00';
const section = (out: string, title: string) => {
  const i = out.indexOf(title);
  if (i < 0) return '';
  const j = out.indexOf('***', i + title.length + 3);
  return out.slice(i, j < 0 ? undefined : j);
};
const num = (s: string, re: RegExp) => Number(re.exec(s)?.[1] ?? 0);

export type PerfResult = { sent: number; acks: Ack[]; out: string; code: number | null };

/**
 * perfdhcp in rack r's client namespace, as a relay (`-l`: giaddr is its address, source port 67), DORA at `rate`
 * for `seconds` over `clients` MACs from the shared base; bounded by a hard limit. Its lease list (-x l) is
 * what it was ACKed.
 */
export async function perfdhcp(r: Rack, opts: { rate: number; seconds?: number; count?: number; clients: number }) {
  const run = opts.count !== undefined ? ['-n', String(opts.count)] : ['-p', String(opts.seconds ?? 5)];
  const res = await runIn(
    NS.p(r),
    [
      'perfdhcp',
      '-4',
      '-l',
      perfAddr(r),
      '-b',
      `mac=${MAC_BASE}`,
      '-R',
      String(opts.clients),
      '-r',
      String(opts.rate),
      ...run,
      '-W',
      '2000000',
      '-x',
      'l',
      `10.121.${idx(r)}.1`,
    ],
    ((opts.seconds ?? 0) + (opts.count ?? 0) / opts.rate + 40) * 1000,
  );
  const out = res.out;
  const leases = section(out, 'Leases for REQUEST-ACK')
    .split('\n')
    .map((l) => l.split(',').map((f) => f.trim()))
    .filter((f) => !!f[1] && /^\d+\.\d+\.\d+\.\d+$/.test(f[1]));
  const acks = leases.map(([client, address]) => ({
    subnet: `rack-${r}`,
    mac: macOf(client!),
    address: address!,
    from: `perfdhcp-${r}`,
  }));
  return {
    sent: num(section(out, 'Statistics for: DISCOVER-OFFER'), /sent packets: (\d+)/),
    acks,
    out,
    code: res.code,
  } as PerfResult;
}

// perfdhcp prints the client as its MAC (hex with colons) or a client id (01 + MAC): keep the MAC.
function macOf(client: string): string {
  const hex = client.replace(/[^0-9a-f]/gi, '').toLowerCase();
  const m = hex.length === 14 && hex.startsWith('01') ? hex.slice(2) : hex.slice(-12);
  return m.match(/../g)!.join(':');
}

/** dhcrelay in a relay namespace: downstream br0, upstream the given interfaces, to the given servers. */
export function dhcrelay(ns: string, up: string[], servers: string[]): Promise<Proc> {
  return startIn(
    ns,
    ['dhcrelay', '-4', '-d', '-id', 'br0', ...up.flatMap((u) => ['-iu', u]), ...servers],
    (o) => /Sending on|Listening on/.test(o),
    20_000,
  );
}

// dhclient runs this (never dhclient-script: it would rewrite the host's resolv.conf); a default route through the
// relay so renewals (unicast to the server identifier) reach the daemon.
export function writeDhclientScript(dir: string): string {
  const f = path.join(dir, 'dhclient.sh');
  writeFileSync(
    f,
    `#!/bin/sh
echo "$reason ip=$new_ip_address server=$new_dhcp_server_identifier" >> ${dir}/dhclient-$(ip netns identify)-$interface.log
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    if [ "$old_ip_address" != "$new_ip_address" ]; then ip addr flush dev $interface; fi
    ip addr replace $new_ip_address/$new_subnet_mask dev $interface
    for r in $new_routers; do ip route replace default via $r dev $interface; break; done ;;
  RELEASE|EXPIRE|FAIL|STOP) ip addr flush dev $interface ;;
esac
exit 0
`,
    { mode: 0o755 },
  );
  return f;
}

export type Dhclient = { proc: Proc; ns: string; ifname: string; mac: string; subnet: string; dir: string };

/** dhclient in the foreground (-d, so its PID is ours), resolved once bound (bounded). */
export async function dhclient(
  ns: string,
  ifname: string,
  mac: string,
  subnet: string,
  dir: string,
  limitMs = 60_000,
): Promise<Dhclient> {
  const script = path.join(dir, 'dhclient.sh');
  const proc = await startIn(
    ns,
    [
      'dhclient',
      '-4',
      '-d',
      '-v',
      '-sf',
      script,
      '-lf',
      path.join(dir, `${ns}-${ifname}.leases`),
      '-pf',
      path.join(dir, `${ns}-${ifname}.pid`),
      ifname,
    ],
    (o) => /bound to [\d.]+/.test(o),
    limitMs,
  );
  return { proc, ns, ifname, mac, subnet, dir };
}

/**
 * Every lease the client took (its script's log: BOUND, RENEW, REBIND, REBOOT), with the server identifier
 * (option 54) of the ACK: dhclient's own "DHCPACK from" names the relay that forwarded it.
 */
export function dhclientAcks(c: Dhclient): Ack[] {
  const f = path.join(c.dir, `dhclient-${c.ns}-${c.ifname}.log`);
  const text = existsSync(f) ? readFileSync(f, 'utf8') : '';
  return [...text.matchAll(/^(?:BOUND|RENEW|REBIND|REBOOT) ip=([\d.]+) server=([\d.]+)$/gm)].map((m) => ({
    subnet: c.subnet,
    mac: c.mac,
    address: m[1]!,
    from: m[2]!,
  }));
}

export type SseEvent = { id: number; type: string; data: { key?: string; [k: string]: unknown } };

/** An SSE subscriber to a daemon's /api/v1/events (curl, in that daemon's namespace). */
export function subscribe(ns: string, base: string, query: string, lastEventId?: number) {
  const proc: NsProcess = spawnIn(ns, [
    'curl',
    '-sN',
    '--max-time',
    '600',
    '-H',
    `Authorization: Bearer ${TOKEN}`,
    ...(lastEventId !== undefined ? ['-H', `Last-Event-ID: ${lastEventId}`] : []),
    `${base}/api/v1/events?${query}`,
  ]);
  const events = (): SseEvent[] => {
    const out: SseEvent[] = [];
    for (const block of proc.output().split('\n\n')) {
      const id = /^id: (\d+)$/m.exec(block)?.[1];
      const type = /^event: (.+)$/m.exec(block)?.[1];
      const data = /^data: (.+)$/m.exec(block)?.[1];
      if (id && type && data) out.push({ id: Number(id), type, data: JSON.parse(data) });
    }
    return out;
  };
  /** The `event: lost` notices (no id): the replay no longer reached back, `oldest` the first id it still had. */
  const lost = (): { after: number; oldest: number; reason: string }[] =>
    proc
      .output()
      .split('\n\n')
      .filter((block) => /^event: lost$/m.test(block))
      .flatMap((block) => {
        const data = /^data: (.+)$/m.exec(block)?.[1];
        return data ? [JSON.parse(data)] : [];
      });
  return { proc, events, lost };
}
