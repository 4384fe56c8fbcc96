import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { exited, freePort, ROOT, waitHttp } from '../helpers/proc.js';
import { cli, spawnCli } from './run.js';

// Each case runs the CLI as a process, often several times (~1 s each under tsx): room for a loaded machine.
vi.setConfig({ testTimeout: 90_000 });

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** src/main.ts (what bin/plinth.js runs): `serve` or daemon flags run the daemon; anything else is the CLI. */
describe('plinth dispatch', () => {
  it("--help lists the commands; serve --help is the daemon's flags", async () => {
    const client = await cli(['--help']);
    expect(client.code).toBe(0);
    expect(client.stdout).toMatch(/^Usage: plinth COMMAND/);
    for (const cmd of ['machines', 'files', 'apply', 'watch', 'info', 'serve', 'lab'])
      expect(client.stdout).toContain(`  ${cmd}`);
    expect(client.stdout).not.toContain('--dhcp-port');
    expect((await cli(['help'])).stdout).toBe(client.stdout);
    const daemon = await cli(['serve', '--help']);
    expect(daemon.code).toBe(0);
    expect(daemon.stdout).toMatch(/^Usage: plinth \[serve\] \[options\]/);
    expect(daemon.stdout).toContain('--dhcp-port');
  });

  it('a bare plinth prints the usage and exits 2 (it starts no daemon)', async () => {
    const r = await cli([], { timeoutMs: 20_000 });
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^Usage: plinth COMMAND/);
    expect(r.stdout).toContain('serve');
  });

  it('--version and -V print the version, for the CLI and for serve; no parseArgs text', async () => {
    const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    for (const args of [['--version'], ['-V'], ['serve', '--version'], ['version']]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toBe(`${version}\n`);
      expect(r.stderr).toBe('');
    }
    const h = await cli(['machines', '-h']);
    expect(h.stdout).toMatch(/^Usage: plinth machines/);
    expect(h.stderr).not.toMatch(/To specify a positional argument/);
  });

  it("a wrong daemon flag is still the daemon's usage error (exit 2)", async () => {
    const r = await cli(['--no-such-setting']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/see plinth serve --help/);
  });

  it('a CLI global option first means the CLI', async () => {
    const port = await freePort();
    const r = await cli(['--endpoint', `http://127.0.0.1:${port}`, 'info']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot reach Plinth/);
    expect((await cli(['-o', 'json', 'nosuch'])).code).toBe(2);
  });

  it("npx plinth works from the clone (the package's own bin, no registry)", async () => {
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync('npx', ['--offline', '--no-install', 'plinth', 'help'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Usage: plinth COMMAND/);
  });

  for (const form of [['serve'], []]) {
    it(`plinth ${form.join(' ') || '(daemon flags only)'} runs the daemon; the CLI talks to it`, async () => {
      const dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-bin-'));
      dirs.push(dataDir);
      const port = await freePort();
      const httpsPort = await freePort();
      const daemon = spawnCli([
        ...form,
        '--no-dhcp',
        '--no-tftp',
        '--http-address',
        '127.0.0.1',
        '--http-port',
        String(port),
        '--https-port',
        String(httpsPort),
        '--data-dir',
        dataDir,
        '--log-level',
        'warn',
      ]);
      try {
        await waitHttp(port);
        const r = await cli(['machines', 'list'], {
          // TLS is on by default: the API is on the HTTPS port, trusted through the data dir's certificate.
          env: { PLINTH_ENDPOINT: `https://127.0.0.1:${httpsPort}`, PLINTH_DATA_DIR: dataDir },
        });
        expect(r.code, r.stderr).toBe(0);
        expect(r.json()).toEqual([]);
      } finally {
        daemon.kill('SIGTERM');
        expect((await exited(daemon)).code).toBe(0);
      }
    });
  }
});
