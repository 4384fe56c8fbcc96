import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

describe('config', () => {
  it('defaults work with nothing set', () => {
    const c = loadConfig([], {});
    expect(c).toMatchObject({
      dataDir: './var',
      httpPort: 8091,
      dhcp: true,
      dhcpPort: 67,
      tftp: true,
      tftpPort: 69,
      logLevel: 'info',
    });
  });

  it('flag beats environment beats file', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'plinth-cfg-'));
    const f = path.join(dir, 'plinth.yaml');
    writeFileSync(f, 'httpPort: 9000\ndataDir: /srv/plinth\ntftp: false\ndhcpInterfaces: [br0, br1]\n');
    const fileOnly = loadConfig(['--config', f], {}) as any;
    expect(fileOnly).toMatchObject({
      httpPort: 9000,
      dataDir: '/srv/plinth',
      tftp: false,
      dhcpInterfaces: ['br0', 'br1'],
    });
    const env = loadConfig(['--config', f], { PLINTH_HTTP_PORT: '9100', PLINTH_DHCP_INTERFACES: 'eth0, eth1' }) as any;
    expect(env.httpPort).toBe(9100);
    expect(env.dhcpInterfaces).toEqual(['eth0', 'eth1']);
    const flag = loadConfig(['--config', f, '--http-port', '9200', '--no-dhcp'], { PLINTH_HTTP_PORT: '9100' }) as any;
    expect(flag.httpPort).toBe(9200);
    expect(flag.dhcp).toBe(false);
  });

  it('names the setting that is wrong', () => {
    expect(() => loadConfig(['--tftp-max-blksize', '70000'], {})).toThrow(/--tftp-max-blksize/);
    expect(() => loadConfig([], { PLINTH_TFTP_BUSY_POLL_US: '-5' })).toThrow(/PLINTH_TFTP_BUSY_POLL_US/);
    expect((loadConfig(['--tftp-busy-poll-us', '0'], {}) as any).tftpBusyPollUs).toBe(0);
    expect((loadConfig([], {}) as any).tftpBusyPollUs).toBe(200);
    expect(() => loadConfig([], { PLINTH_DHCP_PORT: '-1' })).toThrow(/PLINTH_DHCP_PORT/);
    const dir = mkdtempSync(path.join(tmpdir(), 'plinth-cfg-'));
    const f = path.join(dir, 'bad.yaml');
    writeFileSync(f, 'httpPrt: 1\n');
    expect(() => loadConfig(['--config', f], {})).toThrow(ConfigError);
    expect(() => loadConfig(['--config', f], {})).toThrow(/httpPrt/);
    expect(() => loadConfig(['--config', path.join(dir, 'missing.yaml')], {})).toThrow(/cannot read/);
  });

  it('several daemons: the heartbeat period, 10 s unless set, 1 to 300', () => {
    expect((loadConfig([], {}) as any).heartbeatSeconds).toBe(10);
    expect((loadConfig(['--heartbeat-seconds', '3'], {}) as any).heartbeatSeconds).toBe(3);
    expect((loadConfig([], { PLINTH_HEARTBEAT_SECONDS: '30' }) as any).heartbeatSeconds).toBe(30);
    expect(() => loadConfig(['--heartbeat-seconds', '0'], {})).toThrow(/--heartbeat-seconds/);
  });

  it('TLS and HTTP limits: defaults, and what is refused', () => {
    const c = loadConfig([], {}) as any;
    expect(c).toMatchObject({
      tls: 'on',
      httpsPort: 8443,
      ipxeHttps: false,
      httpMaxConnectionsPerClient: 64,
      httpHeadersTimeoutMs: 10_000,
      httpIdleTimeoutMs: 60_000,
      httpRequestTimeoutMs: 3_600_000,
    });
    expect(c.httpMaxConnections).toBeUndefined();
    expect(c.tlsCert).toBeUndefined();
    const env = loadConfig([], {
      PLINTH_TLS: 'off',
      PLINTH_HTTP_MAX_CONNECTIONS: '500',
      PLINTH_HTTP_HEADERS_TIMEOUT_MS: '2000',
    }) as any;
    expect(env).toMatchObject({ tls: 'off', httpMaxConnections: 500, httpHeadersTimeoutMs: 2000 });
    const files = loadConfig(['--tls-cert', '/c.pem', '--tls-key', '/k.pem', '--ipxe-https'], {}) as any;
    expect(files).toMatchObject({ tlsCert: '/c.pem', tlsKey: '/k.pem', ipxeHttps: true });
    expect(() => loadConfig(['--tls-cert', '/c.pem'], {})).toThrow(/--tls-cert needs --tls-key/);
    expect(() => loadConfig([], { PLINTH_TLS_KEY: '/k.pem' })).toThrow(/--tls-key needs --tls-cert/);
    expect(() => loadConfig(['--tls', 'maybe'], {})).toThrow(/--tls/);
    expect(() => loadConfig(['--tls', 'off', '--ipxe-https'], {})).toThrow(/--ipxe-https needs --tls on/);
    expect(() => loadConfig(['--tls', 'off', '--tls-cert', 'c', '--tls-key', 'k'], {})).toThrow(/--tls is off/);
    expect(() => loadConfig(['--https-port', '8091'], {})).toThrow(/different ports/);
    expect(() => loadConfig([], { PLINTH_HTTP_MAX_CONNECTIONS: '0' })).toThrow(/PLINTH_HTTP_MAX_CONNECTIONS/);
    expect(() => loadConfig(['--http-headers-timeout-ms', '5'], {})).toThrow(/--http-headers-timeout-ms/);
  });
});
