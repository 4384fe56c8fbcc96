/**
 * The power service's settings (--power-concurrency, --power-timeout): parsed like every daemon setting, and
 * honoured by a real daemon. Its BMCs are fakes that never answer, so each call ends by the timeout; two machines
 * on two BMCs power at once, and the cap decides whether their calls overlap.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import { createLogger } from '../../src/log.js';
import type { DriverFactory } from '../../src/power/driver.js';
import { testConfig } from '../helpers/daemon.js';

describe('power settings', () => {
  it('parse from flags, environment and file, with the defaults and a clear error', () => {
    const flags = loadConfig(['--power-concurrency', '4', '--power-timeout', '5'], {});
    expect(flags).toMatchObject({ powerConcurrency: 4, powerTimeout: 5 });
    const env = loadConfig([], { PLINTH_POWER_CONCURRENCY: '2', PLINTH_POWER_TIMEOUT: '90' });
    expect(env).toMatchObject({ powerConcurrency: 2, powerTimeout: 90 });
    expect(loadConfig([], {})).toMatchObject({ powerConcurrency: 16, powerTimeout: 30 });
    expect(() => loadConfig(['--power-concurrency', '0'], {})).toThrow(ConfigError);
    expect(() => loadConfig(['--power-timeout', 'soon'], {})).toThrow(/--power-timeout: "soon" is not allowed/);
  });
});

describe('a daemon with power settings', () => {
  let daemon: Daemon | undefined;
  let dir = '';
  afterEach(async () => {
    await daemon?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** BMCs that never answer; `peak` is the most calls in flight at once, all BMCs together. */
  function hangingBmcs() {
    const seen = { now: 0, peak: 0 };
    const hang = (signal: AbortSignal) => {
      seen.now++;
      seen.peak = Math.max(seen.peak, seen.now);
      return new Promise<never>((_, reject) =>
        signal.addEventListener('abort', () => {
          seen.now--;
          reject(new Error('aborted'));
        }),
      );
    };
    const drivers: DriverFactory = () => ({
      status: hang,
      power: (_a, s) => hang(s),
      setBootDevice: (_o, s) => hang(s),
    });
    return { seen, drivers };
  }

  async function run(over: { powerConcurrency?: number; powerTimeout?: number }) {
    dir = mkdtempSync(path.join(tmpdir(), 'plinth-power-settings-'));
    const bmcs = hangingBmcs();
    daemon = await startDaemon(testConfig(dir, over), createLogger('silent'), {}, { drivers: bmcs.drivers });
    const token = readFileSync(path.join(dir, 'admin.token'), 'utf8').trim();
    const api = async (method: string, u: string, body?: unknown) => {
      const r = await fetch(`http://127.0.0.1:${daemon!.httpPort}/api/v1${u}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: r.status, body: (await r.json()) as { detail?: string } };
    };
    for (const name of ['m1', 'm2']) {
      const bmc = { driver: 'ipmi', address: `bmc-${name}`, username: 'u', password: 'p' };
      expect((await api('POST', '/machines', { name, bmc })).status).toBe(201);
    }
    const both = await Promise.all(['m1', 'm2'].map((m) => api('POST', `/machines/${m}/power`, { action: 'on' })));
    return { both, peak: bmcs.seen.peak };
  }

  it('--power-timeout ends a call that hangs; --power-concurrency 1 runs two BMCs one after the other', async () => {
    const { both, peak } = await run({ powerConcurrency: 1, powerTimeout: 1 });
    for (const r of both) {
      expect(r.status).toBe(504);
      expect(r.body.detail).toMatch(/did not answer on within 1000 ms/);
    }
    expect(peak).toBe(1);
  });

  it('by default the two BMCs are called at once', async () => {
    const { both, peak } = await run({ powerTimeout: 1 });
    expect(both.map((r) => r.status)).toEqual([504, 504]);
    expect(peak).toBe(2);
  });
});
