import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import { testConfig } from '../helpers/daemon.js';
import { cli } from './run.js';

vi.setConfig({ testTimeout: 90_000 });

let d: Daemon;
let dataDir: string;
let empty: string;
let token: string;
let endpoint: string;
let fp: string;
const lines: { msg?: string; url?: string }[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-cli-tls-'));
  // A data dir without the daemon's files: the CLI finds no local certificate (nor token) there.
  empty = mkdtempSync(path.join(tmpdir(), 'plinth-cli-tls-empty-'));
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  d = await startDaemon(testConfig(dataDir, { tls: 'on', httpsPort: 0 }), log, {});
  token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
  endpoint = `https://127.0.0.1:${d.httpsPort}`;
  fp = d.tls!.fingerprint;
});
afterAll(async () => {
  await d?.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(empty, { recursive: true, force: true });
});

const remote = (env: Record<string, string> = {}) => ({
  env: { PLINTH_ENDPOINT: endpoint, PLINTH_TOKEN: token, PLINTH_DATA_DIR: empty, ...env },
});
const seen = (url: string) => lines.filter((l) => l.msg === 'http' && l.url === url).length;

describe('the CLI verifies the daemon certificate', () => {
  it('without a pin: refused with the fingerprint to pin and where to check it', async () => {
    const r = await cli(['machines', 'list'], remote());
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('not trusted');
    expect(r.stderr).toContain(`--fingerprint ${fp}`);
    expect(r.stderr).toContain('--ca');
  });

  it('with the pin (flag, or the environment in the colon form): works', async () => {
    const r = await cli(['machines', 'list', '--fingerprint', fp], remote());
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toEqual([]);
    const colons = fp
      .slice(7)
      .toUpperCase()
      .replace(/(..)(?!$)/g, '$1:');
    const e = await cli(['info'], remote({ PLINTH_FINGERPRINT: `SHA256:${colons}`, PLINTH_OUTPUT: 'json' }));
    expect(e.code, e.stderr).toBe(0);
    expect(e.json().tls.fingerprint).toBe(fp);
  });

  it('with a wrong pin: refused before anything (the token) is sent', async () => {
    const before = seen('/api/v1/prefs');
    const wrong = `sha256:${'ab'.repeat(32)}`;
    const r = await cli(['prefs', 'show', '--fingerprint', wrong], remote());
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`not the pinned ${wrong}`);
    expect(r.stderr).toContain(fp);
    expect(seen('/api/v1/prefs')).toBe(before);
    // The same CLI with the right pin reaches that route: the count above can move.
    expect((await cli(['prefs', 'show', '--fingerprint', fp], remote())).code).toBe(0);
    expect(seen('/api/v1/prefs')).toBe(before + 1);
  });

  it('a malformed pin is a usage error (exit 2)', async () => {
    const r = await cli(['machines', 'list', '--fingerprint', 'sha256:xyz'], remote());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('is not a SHA-256 fingerprint');
  });

  it('--ca with the certificate file works by name (localhost), as does the local daemon by default', async () => {
    const ca = path.join(empty, 'plinth-ca.pem');
    writeFileSync(ca, readFileSync(path.join(dataDir, 'tls', 'cert.pem')));
    const r = await cli(
      ['machines', 'list', '--ca', ca],
      remote({ PLINTH_ENDPOINT: `https://localhost:${d.httpsPort}` }),
    );
    expect(r.code, r.stderr).toBe(0);
    // No flags at all: token and certificate from $PLINTH_DATA_DIR, as for a daemon on this host.
    const local = await cli(['machines', 'list'], { env: { PLINTH_ENDPOINT: endpoint, PLINTH_DATA_DIR: dataDir } });
    expect(local.code, local.stderr).toBe(0);
  });

  it('uploads and the event stream go through the pin too', async () => {
    const f = path.join(empty, 'hello.txt');
    writeFileSync(f, 'hello tls\n');
    const up = await cli(['files', 'upload', f, 'tls/hello.txt', '--fingerprint', fp], remote());
    expect(up.code, up.stderr).toBe(0);
    const refused = await cli(['files', 'upload', f, 'tls/other.txt'], remote());
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`--fingerprint ${fp}`);
    const watch = cli(['watch', '--count', '1', '--fingerprint', fp], remote({ PLINTH_OUTPUT: 'json' }));
    // The watcher needs a moment to subscribe; create until it has seen one (bounded).
    let done = false;
    let n = 0;
    const creator = (async () => {
      for (; n < 20; n++) {
        await new Promise((r) => setTimeout(r, 500));
        const c = await cli(['machines', 'create', '-f', '-', '--fingerprint', fp], {
          ...remote(),
          input: JSON.stringify({ name: `w${n}` }),
        });
        if (c.code !== 0) throw new Error(c.stderr);
        if (done) return;
      }
    })();
    const w = await watch;
    done = true;
    await creator;
    expect(w.code, w.stderr).toBe(0);
    expect(w.stdout).toContain('machines.');
  });
});
