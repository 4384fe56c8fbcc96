import dgram from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { bindFailure } from '../../src/bind-error.js';
import { loadNetAddon, openUdpSocket, portError } from '../../src/dhcp/bind.js';
import { ensureAddon } from './addon.js';
import { ports } from './helpers.js';

// Build the socket helper if this checkout has not yet (the SO_BINDTODEVICE test needs it).
ensureAddon();

describe('DHCP sockets', () => {
  it('names the port and every fix when a port cannot be bound', () => {
    const e = portError(67, 'DHCP', Object.assign(new Error('x'), { code: 'EACCES' }));
    expect(e.message).toMatch(/UDP port 67/);
    expect(e.message).toMatch(/root/);
    expect(e.message).toMatch(/setcap cap_net_bind_service=\+ep "\$\(readlink -f "\$\(which node\)"\)"/);
    expect(e.message).toMatch(/--dhcp-port/);
    expect(e.message).toMatch(/--no-dhcp/);
    expect((e as NodeJS.ErrnoException).code).toBe('EACCES');
    // The same formatter as TFTP and HTTP (src/bind-error.ts), with DHCP's own fixes.
    const busy = portError(67, 'proxyDHCP', Object.assign(new Error('x'), { code: 'EADDRINUSE' }));
    expect(busy.message).toBe(
      bindFailure('DHCP', 'proxyDHCP UDP port 67 (EADDRINUSE)', 67, { code: 'EADDRINUSE' } as NodeJS.ErrnoException, {
        port: '--dhcp-port',
        off: '--no-dhcp',
        holders: 'another DHCP server (dnsmasq, isc-dhcp-server, kea)',
      }),
    );
    expect(busy.message).toMatch(/another DHCP server \(dnsmasq, isc-dhcp-server, kea\) already uses it/);
    const other = portError(67, 'DHCP', Object.assign(new Error('no such device'), { code: 'EIO' }));
    expect(other.message).toMatch(
      /no such device\. Fix: check the interface names \(--dhcp-interfaces\), or switch DHCP off with --no-dhcp\.$/,
    );
  });

  it('fails with EADDRINUSE (not silent sharing) when another server holds the port', async () => {
    const { port } = ports();
    const a = await openUdpSocket({ port });
    try {
      await expect(openUdpSocket({ port })).rejects.toThrow(
        new RegExp(`UDP port ${port} \\(EADDRINUSE\\).*--dhcp-port.*--no-dhcp`),
      );
    } finally {
      a.close();
    }
  });

  it.skipIf(!loadNetAddon() || process.getuid?.() !== 0)(
    'binds one socket per interface (SO_BINDTODEVICE) and receives on it',
    async () => {
      const { port } = ports();
      const s = await openUdpSocket({ port, ifname: 'lo' });
      // A second socket on the same port but another device does not conflict; on the same device it does.
      await expect(openUdpSocket({ port, ifname: 'lo' })).rejects.toThrow(/EADDRINUSE/);
      await expect(openUdpSocket({ port, ifname: 'no-such-if0' })).rejects.toThrow(
        /interface no-such-if0 does not exist/,
      );
      const got = new Promise<string>((res) => s.once('message', (m) => res(m.toString())));
      const c = dgram.createSocket('udp4');
      c.send('hello', port, '127.0.0.1');
      expect(await got).toBe('hello');
      c.close();
      s.close();
    },
  );
});
