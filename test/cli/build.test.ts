import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { exited, freePort, ROOT, waitHttp } from '../helpers/proc.js';
import { cleanEnv } from './run.js';

// tsc over the whole of src/ takes tens of seconds on a loaded machine.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 300_000 });

/** `npm run build` into a scratch directory of the checkout (so ../package.json and ../native resolve as in dist/). */
let out: string;
beforeAll(() => {
  out = mkdtempSync(path.join(ROOT, '.build-test-'));
  execFileSync(process.execPath, [path.join(ROOT, 'scripts/build.mjs'), '--out', out], { stdio: 'pipe' });
});
afterAll(() => {
  if (out) rmSync(out, { recursive: true, force: true });
});

const node = (args: string[], env: Record<string, string> = {}) =>
  execFileSync(process.execPath, [path.join(out, 'main.js'), ...args], { env: cleanEnv(env), encoding: 'utf8' });

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

describe('the compiled build (npm run build)', () => {
  it('holds every module and every file the modules find beside them (workers, .mjs, the /ui page)', () => {
    for (const f of filesUnder(path.join(ROOT, 'src'))) {
      const rel = path.relative(path.join(ROOT, 'src'), f);
      if (rel.endsWith('.md') || rel.endsWith('.d.mts')) continue;
      expect(existsSync(path.join(out, rel.replace(/\.ts$/, '.js'))), rel).toBe(true);
    }
  });

  it('runs with plain node: --version, help, and the CLI without a TypeScript loader', () => {
    const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(node(['--version'])).toBe(`${version}\n`);
    expect(node(['--help'])).toMatch(/^Usage: plinth COMMAND/);
  });

  it('serves: the writer thread stores, the render worker renders, /ui is there', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-build-'));
    const port = await freePort();
    const { spawn } = await import('node:child_process');
    const daemon = spawn(
      process.execPath,
      [
        path.join(out, 'main.js'),
        'serve',
        '--no-dhcp',
        '--no-tftp',
        '--tls',
        'off',
        '--http-address',
        '127.0.0.1',
      ].concat(['--http-port', String(port), '--data-dir', dataDir, '--log-level', 'warn']),
      { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    daemon.stderr!.on('data', (b) => {
      err += b;
    });
    try {
      await waitHttp(port);
      const env = { PLINTH_ENDPOINT: `http://127.0.0.1:${port}`, PLINTH_DATA_DIR: dataDir, PLINTH_OUTPUT: 'json' };
      const created = execFileSync(process.execPath, [path.join(out, 'main.js'), 'machines', 'create', '-f', '-'], {
        env: cleanEnv(env),
        input: 'name: built\nmacs: [52:54:00:00:00:42]\n',
        encoding: 'utf8',
      });
      expect(JSON.parse(created)).toMatchObject({ name: 'built' });
      expect(JSON.parse(node(['machines', 'show', 'built'], env))).toMatchObject({ name: 'built' });
      // The machine's boot script is a Liquid template rendered in the worker (render/worker.cjs).
      const script = await fetch(`http://127.0.0.1:${port}/boot/ipxe/52-54-00-00-00-42`);
      expect(script.status, err).toBe(200);
      expect(await script.text()).toMatch(/^#!ipxe/);
      const ui = await fetch(`http://127.0.0.1:${port}/ui`);
      expect(ui.status, err).toBe(200);
      expect(await ui.text()).toMatch(/<html/i);
      expect(JSON.parse(node(['info'], env))).toMatchObject({ name: 'plinth' });
    } finally {
      daemon.kill('SIGTERM');
      expect((await exited(daemon)).code, err).toBe(0);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
