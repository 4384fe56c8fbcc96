/**
 * Option overload (RFC 2132 9.3) read by real clients: Plinth serves a subnet whose options cannot fit in a
 * 576-byte reply, and ISC dhclient (asking with `send dhcp-max-message-size 576`) and busybox udhcpc (which
 * sends 57 = 576 itself) must still see every option. Root, the native helper built, dhclient and busybox
 * installed; not part of the unit suite:
 *   node --import tsx test/dhcp/overload-netns.ts [--kea]
 * With --kea, kea-dhcp4 serves the same subnet instead, for comparison. Namespaces plinth-dhcp-ovs (server) and
 * plinth-dhcp-ovc (client), deleted at the end; every process is ours and bounded in time.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadNetAddon } from '../../src/dhcp/bind.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { decode, emptyPacket, encode, macBytes } from '../../src/dhcp/packet.js';
import { addNamespace, addVeth, deleteNamespaces, runIn, startIn } from '../e2e/dhcp-netns.js';

const SRV = 'plinth-dhcp-ovs';
const CL = 'plinth-dhcp-ovc';
const ips = (base: string, n: number) => Array.from({ length: n }, (_, i) => `${base}.${i + 1}`);
/** About 420 bytes of options besides the lease's own: more than the 308 a 576-byte reply holds. */
const OPTIONS: { code: number; name: string; kea: string; value: string | string[] }[] = [
  { code: 6, name: 'domain-name-servers', kea: 'domain-name-servers', value: ips('10.99.61', 10) },
  { code: 42, name: 'ntp-servers', kea: 'ntp-servers', value: ips('10.99.62', 10) },
  { code: 44, name: 'netbios-name-servers', kea: 'netbios-name-servers', value: ips('10.99.63', 10) },
  { code: 69, name: 'smtp-server', kea: 'smtp-server', value: ips('10.99.64', 10) },
  { code: 70, name: 'pop-server', kea: 'pop-server', value: ips('10.99.65', 10) },
  { code: 72, name: 'www-server', kea: 'www-server', value: ips('10.99.66', 8) },
  { code: 15, name: 'domain-name', kea: 'domain-name', value: `${'overload-'.repeat(6)}example.org` },
  { code: 17, name: 'root-path', kea: 'root-path', value: `/srv/nfs/${'r'.repeat(100)}` },
];

function keaConfig() {
  return {
    Dhcp4: {
      'interfaces-config': { interfaces: ['veth-s'], 'dhcp-socket-type': 'raw' },
      'lease-database': { type: 'memfile', persist: false },
      subnet4: [
        {
          id: 1,
          subnet: '10.99.60.0/24',
          pools: [{ pool: '10.99.60.10 - 10.99.60.50' }],
          'option-data': [
            { name: 'routers', data: '10.99.60.1' },
            ...OPTIONS.map((o) => ({ name: o.kea, data: Array.isArray(o.value) ? o.value.join(', ') : o.value })),
          ],
        },
      ],
      loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'INFO' }],
    },
  };
}

async function main() {
  const kea = process.argv.includes('--kea');
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const tmp = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-overload-'));
  deleteNamespaces([SRV, CL]);
  addNamespace(SRV);
  addNamespace(CL);
  try {
    addVeth(
      { ns: SRV, ifname: 'veth-s', cidr: '10.99.60.1/24' },
      { ns: CL, ifname: 'veth-c', mac: '52:54:00:60:00:01' },
    );
    let srv: Awaited<ReturnType<typeof startIn>>;
    if (kea) {
      writeFileSync(path.join(tmp, 'kea.json'), JSON.stringify(keaConfig()));
      srv = await startIn(
        SRV,
        ['env', `KEA_PIDFILE_DIR=${tmp}`, `KEA_LOCKFILE_DIR=${tmp}`, 'kea-dhcp4', '-c', path.join(tmp, 'kea.json')],
        (o) => /DHCP4_STARTED/.test(o),
        15_000,
      );
    } else {
      const cfg = {
        store: path.join(tmp, 'plinth.db'),
        interfaces: ['veth-s'],
        subnets: [
          {
            name: 'ov',
            subnet: '10.99.60.0/24',
            activeStart: '10.99.60.10',
            activeEnd: '10.99.60.50',
            leaseTime: 600,
            options: [{ code: 3, value: '10.99.60.1' }, ...OPTIONS.map((o) => ({ code: o.code, value: o.value }))],
          },
        ],
        logLevel: 'warn',
      };
      writeFileSync(path.join(tmp, 'cfg.json'), JSON.stringify(cfg));
      srv = await startIn(
        SRV,
        [process.execPath, '--import', 'tsx', path.join(root, 'test/e2e/dhcp-run.ts'), path.join(tmp, 'cfg.json')],
        (o) => o.includes('READY'),
        30_000,
      );
    }
    try {
      console.log(kea ? 'server: kea-dhcp4' : 'server: Plinth');
      const self = fileURLToPath(import.meta.url);
      console.log('probe', (await runIn(CL, [process.execPath, '--import', 'tsx', self, 'probe'], 20_000)).out.trim());
      await dhclient(tmp);
      await udhcpc(tmp);
    } finally {
      await srv.stop();
      if (kea)
        console.log(
          srv
            .out()
            .split('\n')
            .filter((l) => /ERROR|WARN/.test(l))
            .slice(-10)
            .join('\n'),
        );
    }
  } finally {
    deleteNamespaces([SRV, CL]);
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** ISC dhclient, one attempt, asking for every option and a 576-byte maximum; its lease file says what it read. */
async function dhclient(tmp: string) {
  const conf = path.join(tmp, 'dhclient.conf');
  writeFileSync(
    conf,
    `send dhcp-max-message-size 576;\nrequest subnet-mask, broadcast-address, routers, ${OPTIONS.map((o) => o.name).join(', ')};\n`,
  );
  const lf = path.join(tmp, 'dhclient.leases');
  const pf = path.join(tmp, 'dhclient.pid');
  const r = await runIn(
    CL,
    ['dhclient', '-4', '-v', '-1', '-cf', conf, '-sf', '/bin/true', '-lf', lf, '-pf', pf, 'veth-c'],
    40_000,
  );
  await runIn(CL, ['sh', '-c', `kill $(cat ${pf}) 2>/dev/null; ip addr flush dev veth-c; true`]);
  const lease = (() => {
    try {
      return readFileSync(lf, 'utf8');
    } catch {
      return '';
    }
  })();
  const bound = /bound to ([\d.]+)/.exec(r.out)?.[1];
  const seen = OPTIONS.map((o) => {
    const m = new RegExp(`option ${o.name} ([^;]+);`).exec(lease);
    const got = m?.[1]?.replace(/"/g, '').split(/,\s*/);
    const want = Array.isArray(o.value) ? o.value : [o.value];
    return { option: o.code, ok: JSON.stringify(got) === JSON.stringify(want) };
  });
  console.log('dhclient', JSON.stringify({ bound, missingOrWrong: seen.filter((s) => !s.ok).map((s) => s.option) }));
  if (!bound) console.log(r.out);
}

/** busybox udhcpc: its script gets the options it knows as environment variables. */
async function udhcpc(tmp: string) {
  const script = path.join(tmp, 'udhcpc.sh');
  const envOut = path.join(tmp, 'udhcpc.env');
  writeFileSync(script, `#!/bin/sh\n[ "$1" = bound ] && env > ${envOut}\nexit 0\n`, { mode: 0o755 });
  const req = OPTIONS.flatMap((o) => ['-O', String(o.code)]);
  const r = await runIn(
    CL,
    ['busybox', 'udhcpc', '-i', 'veth-c', '-n', '-q', '-f', '-t', '3', '-s', script, ...req],
    40_000,
  );
  const env = (() => {
    try {
      return readFileSync(envOut, 'utf8');
    } catch {
      return '';
    }
  })();
  // udhcpc's names: dns, ntpsrv, wins, smtpsrv, popsrv, wwwsrv (when known), domain, rootpath; unknown: optNN.
  const names: Record<number, string[]> = {
    6: ['dns'],
    42: ['ntpsrv'],
    44: ['wins'],
    69: ['smtpsrv', 'opt69'],
    70: ['popsrv', 'opt70'],
    72: ['wwwsrv', 'opt72'],
    15: ['domain'],
    17: ['rootpath'],
  };
  const seen = OPTIONS.map((o) => {
    const line = env.split('\n').find((l) => names[o.code]!.some((n) => l.startsWith(`${n}=`)));
    const value = line?.slice(line.indexOf('=') + 1).trim();
    const want = Array.isArray(o.value) ? o.value.join(' ') : o.value;
    return { option: o.code, ok: value === want || (value !== undefined && /^opt/.test(line!)) };
  });
  const ip = /^ip=(.*)$/m.exec(env)?.[1];
  console.log('udhcpc', JSON.stringify({ bound: ip, missingOrWrong: seen.filter((s) => !s.ok).map((s) => s.option) }));
  if (!ip) console.log(r.out);
}

/** In the client namespace: one DISCOVER with 57 = 576; what the OFFER looks like on the wire. */
async function probe() {
  const addon = loadNetAddon();
  if (!addon) throw new Error('the native helper is not built: npm run build:native');
  const dgram = await import('node:dgram');
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind({ fd: addon.openUdp4('veth-c', 68) }, () => r()));
  s.setBroadcast(true);
  const p = emptyPacket(1);
  p.xid = 0x5a5a0001;
  p.flags = 0x8000;
  p.chaddr = macBytes('52:54:00:60:00:99');
  p.options.set(Opt.MessageType, Buffer.from([MessageType.DISCOVER]));
  p.options.set(Opt.MaxMessageSize, Buffer.from([576 >> 8, 576 & 255]));
  p.options.set(Opt.ParamRequestList, Buffer.from([1, 3, 28, ...OPTIONS.map((o) => o.code)]));
  const got = new Promise<Buffer | undefined>((resolve) => {
    const t = setTimeout(() => resolve(undefined), 5000);
    s.on('message', (m) => {
      const d = decode(m);
      if (d.ok && d.packet.xid === p.xid) {
        clearTimeout(t);
        resolve(m);
      }
    });
  });
  s.send(encode(p), 67, '255.255.255.255');
  const m = await got;
  const d = m && decode(m);
  const info = d?.ok
    ? {
        bytes: m!.length,
        overload: d.packet.options.get(Opt.Overload)?.[0] ?? 0,
        missing: OPTIONS.filter((o) => !d.packet.options.has(o.code)).map((o) => o.code),
      }
    : { offer: 'none' };
  console.log(JSON.stringify(info));
  s.close();
}

if (process.argv[2] === 'probe') await probe();
else await main();
