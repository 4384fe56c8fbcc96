/**
 * The CLI side of images, called as program.ts would call it (the command registration is the integrator's):
 * `bootenv import` draws a progress bar per download on a terminal and prints what was verified, a refusal is
 * the daemon's reason; `bootenv list/get` show READY; `files gc` says what it freed.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getBootenv, importBootenv, listBootenvs } from '../../src/cli/bootenv.js';
import { createClient } from '../../src/cli/client.js';
import type { CliContext } from '../../src/cli/context.js';
import { gcFiles } from '../../src/cli/files.js';
import type { OutputMode } from '../../src/cli/output.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { makeTestKey, type TestKey } from './gpg.js';

let d: TestDaemon;
let key: TestKey;
let server: Server;
let base: string;
const files = new Map<string, Buffer>();
const kernel = Buffer.alloc(300_000, 1);
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function ctxFor(mode: OutputMode, tty = false) {
  const out: string[] = [];
  const err: string[] = [];
  const ctx: CliContext = {
    io: { out: (s) => out.push(s), err: (s) => err.push(s), outTTY: tty, errTTY: tty },
    mode,
    client: createClient({ endpoint: d.url, token: d.token, env: {}, cwd: d.dataDir }),
    env: {},
    cwd: d.dataDir,
    signal: new AbortController().signal,
  };
  return { ctx, out: () => out.join(''), err: () => err.join('') };
}

beforeAll(async () => {
  d = await startTestDaemon();
  key = makeTestKey();
  mkdirSync(path.join(d.dataDir, 'keyrings'));
  key.exportTo(path.join(d.dataDir, 'keyrings', 'k.gpg'));
  server = createServer((req, res) => {
    const b = files.get(req.url ?? '');
    if (!b) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': b.length }).end(b);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  files.set('/vmlinuz', kernel);
  const sums = path.join(d.dataDir, 'SUMS');
  writeFileSync(sums, `${sha(kernel)}  vmlinuz\n`);
  key.detachSign(sums, `${sums}.sig`);
  files.set('/SUMS', Buffer.from(`${sha(kernel)}  vmlinuz\n`));
  files.set('/SUMS.sig', readFileSync(`${sums}.sig`));
  writeFileSync(
    path.join(d.dataDir, 'm.yaml'),
    [
      'name: cli-os',
      'keyring: k.gpg',
      `fingerprints: [${key.fingerprint}]`,
      'checksums:',
      `  - { url: "${base}/SUMS", format: sha256sums, signature: "${base}/SUMS.sig" }`,
      'artifacts:',
      `  - { role: kernel, url: "${base}/vmlinuz", path: cli-os/vmlinuz }`,
    ].join('\n'),
  );
});
afterAll(async () => {
  await d.stop();
  server.close();
  key.remove();
});

describe('CLI: bootenv import, READY, files gc', () => {
  it('import: a progress bar on a terminal, then what was verified and by whom', async () => {
    const c = ctxFor('table', true);
    await importBootenv('m.yaml', {}, c.ctx);
    expect(c.err()).toContain('fetching vmlinuz [########################] 100%');
    expect(c.err()).toContain(`bootenv 'cli-os' imported, signed by ${key.fingerprint}: ready`);
    expect(c.out()).toContain('sha256 in a signed checksum file');
    const again = ctxFor('json');
    await expect(importBootenv('m.yaml', {}, again.ctx)).rejects.toThrow(
      /import refused: bootenv 'cli-os' already exists/,
    );
    await expect(importBootenv('nope.yaml', {}, again.ctx)).rejects.toThrow(/cannot read nope.yaml: ENOENT/);
  });

  it('list and get show whether each bootenv is ready', async () => {
    await d.api('POST', '/api/v1/bootenvs', {
      name: 'broken',
      kernel: 'x/k',
      artifacts: [{ path: 'x/k', sha256: 'e'.repeat(64) }],
    });
    const t = ctxFor('table');
    await listBootenvs(t.ctx);
    expect(t.out()).toMatch(/cli-os\s.*yes/);
    expect(t.out()).toMatch(/broken\s.*no \(missing: x\/k\)/);
    const j = ctxFor('json');
    await getBootenv('broken', j.ctx);
    expect(JSON.parse(j.out())).toMatchObject({ name: 'broken', ready: false, missing: ['x/k'] });
  });

  it('files gc reports the bytes freed', async () => {
    await fetch(`${d.url}/api/v1/files/junk`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${d.token}` },
      body: 'junk bytes',
    });
    await d.api('DELETE', '/api/v1/files/junk');
    const t = ctxFor('table');
    await gcFiles(t.ctx);
    expect(t.err()).toContain('1 blob(s) removed, 10 B freed');
    expect(t.out()).toContain(sha('junk bytes'));
  });
});
