import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Config } from '../../src/config.js';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';

export type TestDaemon = {
  daemon: Daemon;
  url: string;
  token: string;
  dataDir: string;
  api(method: string, p: string, body?: unknown, headers?: Record<string, string>): Promise<ApiResponse>;
  stop(): Promise<void>;
};
export type ApiResponse = { status: number; headers: Headers; body: any; text: string };

export function testConfig(dataDir: string, over: Partial<Config> = {}): Config {
  return {
    dataDir,
    httpPort: 0,
    httpAddress: '127.0.0.1',
    dhcp: false,
    dhcpPort: 0,
    dhcpProxyPort: 0,
    dhcpInterfaces: [],
    tftp: false,
    tftpPort: 0,
    tftpAddress: '127.0.0.1',
    tftpMaxBlksize: 1468,
    tftpBusyPollUs: 200,
    assetsDir: path.resolve('assets'),
    // Stand-ins for the iPXE loaders, so a test does not depend on the host's ipxe package.
    loaderSearch: [path.resolve('test/fixtures/loaders')],
    bootenvsDir: path.resolve('bootenvs'),
    logLevel: 'silent',
    ...over,
  };
}

/** A real daemon on loopback, port 0, in a fresh data dir; DHCP and TFTP off unless asked for. */
export async function startTestDaemon(over: Partial<Config> = {}): Promise<TestDaemon> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-test-'));
  const daemon = await startDaemon(testConfig(dataDir, over), silentLogger, {});
  const url = `http://127.0.0.1:${daemon.httpPort}`;
  const token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
  const api = async (method: string, p: string, body?: unknown, headers: Record<string, string> = {}) => {
    const h: Record<string, string> = { authorization: `Bearer ${token}`, ...headers };
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      h['content-type'] ??= 'application/json';
    }
    const r = await fetch(url + p, { method, headers: h, body: payload });
    const text = await r.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: r.status, headers: r.headers, body: parsed, text };
  };
  return {
    daemon,
    url,
    token,
    dataDir,
    api,
    async stop() {
      await daemon.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
