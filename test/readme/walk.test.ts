import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { section, shBlocks, tourScript, walkBlocks } from './blocks.js';

/*
 * The README's curl walk and the five-minute tour's API steps, run as written (issue 14): the fenced blocks that
 * follow a `<!-- walk -->` line in README.md, in order, in one bash, against a daemon started as the README starts
 * it (default ports, TLS on with its self-signed certificate), from the directory it was started in.
 *
 * The daemon and the blocks run in a network namespace of their own (`unshare -rn`, no root needed where user
 * namespaces are allowed): its loopback holds the default ports 8443 and 8091, so the walk needs no port of its
 * own and a daemon the developer runs is never reached. What the test provides is what the README tells the
 * operator to have: `vmlinuz` and `initrd.gz` to upload, `var/images/` from the tour's build step (small stand-ins),
 * the clone's `bin/plinth.js`, and `sudo` (a shim: the namespace's root is the test's user).
 */
const ROOT = path.resolve(import.meta.dirname, '../..');
const README = path.join(ROOT, 'README.md');

type LogLine = { msg?: string; method?: string; url?: string; status?: number };

/** The daemon's one line per request (src/http/app.ts logRequest). */
function requestLines(log: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of log.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const o = JSON.parse(line) as LogLine;
      if (o.msg === 'http') out.push(o);
    } catch {
      // not a log line (tsx or node printing something): ignored
    }
  }
  return out;
}

// Without user namespaces (a locked-down container) a developer's run skips; CI (.ci/run, as root) never does.
const canUnshare = spawnSync('unshare', ['-rn', 'true']).status === 0 || !!process.env.CI;

/** The driver: loopback up, the daemon started, each block run in one bash with -e, the daemon stopped. */
function driver(blocks: string[]): string {
  const script = blocks.map((b, i) => `echo "### walk block ${i + 1}"\n${b}`).join('\n');
  writeFileSync('walk.sh', `set -eo pipefail\n${script}\n`);
  return `set -u
ip link set lo up
node ${JSON.stringify(path.join(ROOT, 'bin/plinth.js'))} serve > daemon.log 2>&1 &
pid=$!
up=0
for i in $(seq 150); do
  if curl -s -o /dev/null http://127.0.0.1:8091/api/v1/info; then up=1; break; fi
  sleep 0.2
done
rc=99
if [ $up = 1 ]; then bash walk.sh > walk.out 2>&1; rc=$?; fi
kill -TERM $pid; wait $pid
echo "walk exit $rc (daemon up: $up)"
exit $rc
`;
}

describe('every runnable block of the walk and the tour is run by a test', () => {
  it('the curl walk: each of its sh blocks is a walk block (run below)', () => {
    const readme = readFileSync(README, 'utf8');
    const walk = walkBlocks(readme);
    const blocks = shBlocks(section(readme, '## A walk through the API with curl'));
    expect(blocks.length).toBeGreaterThan(0);
    for (const b of blocks) expect(walk, b.slice(0, 200)).toContain(b);
  });

  it('the five-minute tour: install, API and lab blocks in the shape test/e2e/readme-tour.test.ts runs', () => {
    const readme = readFileSync(README, 'utf8');
    const all = shBlocks(section(readme, '### Five-minute tour'));
    const t = tourScript(readme);
    // The e2e test runs every block of the section: the two before the lab block, then the lab block around step 4.
    expect(t.blocks.length + 1).toBe(all.length);
    expect(t.beforeStep4 + t.afterStep4).toBe(all.at(-1));
    expect(t.blocks[0]).toMatch(/npm ci && sudo npm start &/);
    // The API block is also a walk block, so `npm test` runs it on every change.
    expect(walkBlocks(readme)).toContain(t.blocks[1]);
    expect(t.beforeStep4).toMatch(/plinth.js lab up/);
    expect(t.afterStep4).toMatch(/plinth.js lab down/);
  });
});

describe.skipIf(!canUnshare)('the README walk runs verbatim', () => {
  let dir: string;
  let result: { code: number | null; out: string; walk: string; log: string };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'plinth-readme-walk-'));
    const prev = process.cwd();
    process.chdir(dir);
    try {
      writeFileSync('vmlinuz', Buffer.alloc(4096, 1));
      writeFileSync('initrd.gz', Buffer.alloc(8192, 2));
      mkdirSync('var/images', { recursive: true });
      writeFileSync('var/images/vmlinuz', Buffer.alloc(4096, 3));
      writeFileSync('var/images/lab-a.img', Buffer.alloc(8192, 4));
      // The README's CLI is the clone's bin/plinth.js, run from the clone's root.
      mkdirSync('bin');
      symlinkSync(path.join(ROOT, 'bin/plinth.js'), 'bin/plinth.js');
      mkdirSync('shim');
      writeFileSync('shim/sudo', '#!/bin/sh\nexec "$@"\n');
      chmodSync('shim/sudo', 0o755);
      writeFileSync('driver.sh', driver(walkBlocks(readFileSync(README, 'utf8'))));
    } finally {
      process.chdir(prev);
    }
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^PLINTH_|^CURL_/.test(k)) env[k] = v;
    Object.assign(env, {
      HOME: dir,
      PATH: `${path.join(dir, 'shim')}:${process.env.PATH}`,
      // Nothing may be fetched from a registry.
      npm_config_offline: 'true',
      npm_config_update_notifier: 'false',
      PLINTH_BOOTENVS_DIR: path.join(ROOT, 'bootenvs'),
      PLINTH_ASSETS_DIR: path.join(ROOT, 'assets'),
      PLINTH_LOG_LEVEL: 'info',
    });
    // Its own process group: on a timeout the daemon inside goes with the driver (one kill of the group it leads).
    const child = spawn('unshare', ['-rn', 'bash', 'driver.sh'], {
      cwd: dir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 170_000);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    const read = (f: string) => {
      try {
        return readFileSync(path.join(dir, f), 'utf8');
      } catch {
        return '';
      }
    };
    result = { code, out, walk: read('walk.out'), log: read('daemon.log') };
  }, 180_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('finds the marked blocks: the curl walk and the tour API steps', () => {
    const blocks = walkBlocks(readFileSync(README, 'utf8'));
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    expect(blocks[0]).toMatch(/API=https:\/\/localhost:8443\/api\/v1/);
    expect(blocks.at(-1)).toMatch(/bin\/plinth.js bootenvs create/);
  });

  it('every command succeeds', () => {
    expect(result.code, `${result.out}\n${result.walk}\n${result.log.slice(-4000)}`).toBe(0);
  });

  it('every request the walk makes is answered without an error', () => {
    const lines = requestLines(result.log);
    const bad = lines.filter((l) => (l.status ?? 0) >= 400).map((l) => `${l.method} ${l.url} ${l.status}`);
    expect(bad, result.walk).toEqual([]);
  });

  it('the steps the README promises happen, with the statuses it names', () => {
    const seen = requestLines(result.log).map((l) => `${l.method} ${l.url} ${l.status}`);
    expect(seen).toEqual(
      expect.arrayContaining([
        'GET /api/v1/info 200',
        'POST /api/v1/subnets 201',
        'PUT /api/v1/files/lab/initrd.gz 201',
        'GET /files/lab/vmlinuz 200',
        'POST /api/v1/bootenvs 201',
        'POST /api/v1/machines 201',
        'PATCH /api/v1/machines/node-1 200',
        'DELETE /api/v1/machines/node-1 204',
        'PUT /api/v1/files/lab-a/lab-a.img 201',
      ]),
    );
    // Both patches (merge and JSON Patch) and, from the tour, the CLI's bootenv create.
    expect(seen.filter((s) => s === 'PATCH /api/v1/machines/node-1 200')).toHaveLength(2);
    expect(seen.filter((s) => s === 'POST /api/v1/bootenvs 201')).toHaveLength(2);
    expect(result.walk).toMatch(/"name": "lab-a"/);
  });
});
