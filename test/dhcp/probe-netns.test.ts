/**
 * probeBeforeOffer with the real ICMP echo probe (src/dhcp/probe.ts; RFC 2131 section 2.2, "the allocating server
 * SHOULD probe the reused address before allocating the address, e.g., with an ICMP echo request", and 3.1 step 2).
 * As root only (skipped otherwise): two namespaces joined by a veth; the server serves 10.96.0.0/24 (pool
 * .100-.110) on its end; the peer end holds 10.96.0.100, a host the lease table does not know, so it answers the
 * echo. A DISCOVER from the peer gets 10.96.0.101 (probed, silent), and the server's log says why .100 was passed
 * over. Bounded: a 3 s listen. Namespaces $PLINTH_PROBE_NETNS-srv/-peer (default plinth-dhcp-probe), deleted after.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageType } from '../../src/dhcp/options.js';
import { encode } from '../../src/dhcp/packet.js';
import { native } from '../../src/native/index.js';
import { type Proc, runIn, startIn } from '../e2e/dhcp-netns.js';
import { request } from './helpers.js';

const PREFIX = process.env.PLINTH_PROBE_NETNS ?? 'plinth-dhcp-probe';
const SRV = `${PREFIX}-srv`;
const PEER = `${PREFIX}-peer`;
const root = fileURLToPath(new URL('../../', import.meta.url));
const canRun = process.getuid?.() === 0 && native.icmpEcho !== undefined && existsSync('/usr/bin/ip');

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const exists = (ns: string) => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(ns);
/** Only the namespaces this file creates, by their exact names. */
const cleanup = () => {
  for (const ns of [SRV, PEER]) if (exists(ns)) ip('netns', 'del', ns);
};

describe.skipIf(!canRun)('probeBeforeOffer: ICMP echo before the offer (RFC 2131 2.2, 3.1)', () => {
  let tmp = '';
  let srv: Proc | undefined;

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-probe-'));
    cleanup();
    for (const ns of [SRV, PEER]) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    ip('-n', SRV, 'link', 'add', 'pr0', 'type', 'veth', 'peer', 'name', 'pr1', 'netns', PEER);
    ip('-n', SRV, 'addr', 'add', '10.96.0.1/24', 'dev', 'pr0');
    // The host the lease table does not know: the first address of the pool, configured by hand.
    ip('-n', PEER, 'addr', 'add', '10.96.0.100/24', 'dev', 'pr1');
    ip('-n', SRV, 'link', 'set', 'pr0', 'up');
    ip('-n', PEER, 'link', 'set', 'pr1', 'up');
    const cfg = {
      store: path.join(tmp, 'plinth.db'),
      interfaces: ['pr0'],
      subnets: [
        {
          name: 'probed',
          subnet: '10.96.0.0/24',
          activeStart: '10.96.0.100',
          activeEnd: '10.96.0.110',
          leaseTime: 600,
          options: [],
          probeBeforeOffer: true,
        },
      ],
      logLevel: 'info',
    };
    writeFileSync(path.join(tmp, 'cfg.json'), JSON.stringify(cfg));
    srv = await startIn(
      SRV,
      [process.execPath, '--import', 'tsx', path.join(root, 'test/e2e/dhcp-run.ts'), path.join(tmp, 'cfg.json')],
      (o) => o.includes('READY'),
      30_000,
    );
  }, 60_000);

  afterAll(async () => {
    await srv?.stop();
    cleanup();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('an address that answers the echo is passed over (quarantined, logged) and the next one offered', async () => {
    const discover = request(MessageType.DISCOVER, '52:54:00:96:00:01', { flags: 0x8000 });
    const spec = {
      ifname: 'pr1',
      bindPort: 68,
      sends: [{ hex: encode(discover, 1500).toString('hex'), to: '255.255.255.255', port: 67 }],
      listenMs: 3000,
    };
    const r = await runIn(
      PEER,
      [process.execPath, '--import', 'tsx', path.join(root, 'test/e2e/dhcp-probe.ts'), JSON.stringify(spec)],
      30_000,
    );
    const replies = r.out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { yiaddr?: string; options?: Record<string, unknown> });
    const offer = replies.find((x) => x.options?.['53'] === MessageType.OFFER || x.yiaddr !== undefined);
    expect(offer?.yiaddr, r.out).toBe('10.96.0.101');
    const log = srv!.out();
    expect(log).toContain('dhcp: ICMP echo probe socket open');
    expect(log).toContain('10.96.0.100 answered the probe before an offer');
    expect(log).not.toContain('10.96.0.101 answered the probe');
  }, 60_000);
});
