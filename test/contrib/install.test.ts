/**
 * What can be checked of the install story without a Docker engine or a booted systemd: the container's health
 * check answers from a running daemon (and fails without one); the systemd unit has its own user and state dir
 * and grants only the network capabilities; the Docker build context leaves out the host's state, dependencies
 * are built inside the image, which is on a maintained Node line with a HEALTHCHECK.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startTestDaemon } from '../helpers/daemon.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const read = (f: string) => readFileSync(path.join(ROOT, f), 'utf8');

/** The health check's exit code; async, since the daemon it asks runs in this process. */
function health(env: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [path.join(ROOT, 'contrib/healthcheck.mjs')], {
      env: { PATH: process.env.PATH, ...env },
      stdio: 'ignore',
      timeout: 10_000,
    });
    c.on('exit', (code) => resolve(code ?? -1));
  });
}

describe('install', () => {
  it('the health check passes against a running daemon and fails when nothing answers', async () => {
    const d = await startTestDaemon({ tls: 'off' });
    try {
      expect(await health({ PLINTH_TLS: 'off', PLINTH_HTTP_PORT: String(d.daemon.httpPort) })).toBe(0);
    } finally {
      await d.stop();
    }
    const t = await startTestDaemon({ tls: 'on', httpsPort: 0 });
    try {
      expect(await health({ PLINTH_HTTPS_PORT: String(t.daemon.httpsPort) })).toBe(0);
    } finally {
      await t.stop();
    }
    expect(await health({ PLINTH_TLS: 'off', PLINTH_HTTP_PORT: '1' })).toBe(1);
  });

  it('the systemd unit grants only the network capabilities, with its own user and state dir', () => {
    const unit = read('contrib/plinth.service');
    expect(unit).toMatch(/^User=plinth$/m);
    expect(unit).toMatch(/^StateDirectory=plinth$/m);
    expect(unit).toMatch(/^AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_RAW CAP_NET_ADMIN$/m);
    expect(unit).toMatch(/^CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_RAW CAP_NET_ADMIN$/m);
    expect(read('contrib/plinth.sysusers.conf')).toMatch(/^u plinth /m);
    // Not run here: `systemd-analyze verify` (checked by hand); a test must not drive the host's systemd.
  });

  it('the Docker build context leaves out host state, and the image builds everything itself', () => {
    const ignore = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const p of ['node_modules', 'native/build', 'var', '.lab', 'dist', '.git']) expect(ignore).toContain(p);
    const df = read('Dockerfile');
    const major = Number(/ARG NODE_VERSION=(\d+)/.exec(df)?.[1]);
    expect(major).toBeGreaterThanOrEqual(22);
    expect(major % 2).toBe(0); // even majors are the LTS lines
    expect(df).toMatch(/^HEALTHCHECK .*contrib\/healthcheck\.mjs/m);
    // Dependencies are installed from the lock file before the tree is copied, inside the image.
    expect(df.indexOf('RUN npm ci')).toBeGreaterThan(-1);
    expect(df.indexOf('RUN npm ci')).toBeLessThan(df.indexOf('COPY . .'));
    expect(df).toMatch(/apt-get install .*\bipxe\b/);
    // The context the daemon would see: git's view minus .dockerignore holds no data dir or token.
    const tracked = execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' }).split('\n');
    expect(tracked.filter((f) => /(^|\/)(admin\.token|plinth\.db)$/.test(f))).toEqual([]);
  });
});
