import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TestDaemon } from '../helpers/daemon.js';
import { type CliSuite, cli, cliInTty, useCliDaemon } from './run.js';

let d: TestDaemon;
let run: CliSuite['run'];
let tmp: string;
useCliDaemon('plinth-cli-files-', (s) => {
  ({ d, run, tmp } = s);
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const local = (name: string, b: Buffer) => {
  const p = path.join(tmp, name);
  writeFileSync(p, b);
  return p;
};

describe('plinth files', () => {
  const kernel = randomBytes(3 * 1024 * 1024 + 17);

  it('upload streams a file and answers path, size and the sha256 the daemon checked', async () => {
    const r = await run(['files', 'upload', local('vmlinuz', kernel), 'lab/vmlinuz']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ path: 'lab/vmlinuz', size: kernel.length, sha256: sha(kernel) });
    expect(readFileSync(path.join(d.dataDir, 'files/lab/vmlinuz')).equals(kernel)).toBe(true);
    // stderr is not a terminal here: no progress bar, no carriage returns.
    expect(r.stderr).toBe('');
  });

  it('a REMOTE ending in / keeps the local name; no REMOTE means the local name at the top', async () => {
    const b = Buffer.from('initrd bytes');
    const p = local('initrd.gz', b);
    expect((await run(['files', 'upload', p, 'lab/'])).json().path).toBe('lab/initrd.gz');
    expect((await run(['files', 'upload', p])).json().path).toBe('initrd.gz');
  });

  it('list, show and delete', async () => {
    const list = await run(['files', 'list']);
    expect(list.json()).toEqual(
      expect.arrayContaining([expect.objectContaining({ path: 'lab/vmlinuz', sha256: sha(kernel) })]),
    );
    const show = await run(['files', 'show', 'lab/vmlinuz']);
    expect(show.json()).toMatchObject({ size: kernel.length });
    const del = await run(['files', 'delete', 'initrd.gz']);
    expect(del.code).toBe(0);
    expect(existsSync(path.join(d.dataDir, 'files/initrd.gz'))).toBe(false);
    const again = await run(['files', 'delete', 'initrd.gz']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/does not exist/);
  });

  it('--sha256 that does not match: the daemon refuses, keeps nothing, exit 1 with the field error', async () => {
    const p = local('other', Buffer.from('not what the vendor published'));
    const r = await run(['files', 'upload', p, 'lab/other', '--sha256', '0'.repeat(64)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^plinth: upload of lab\/other failed: .*not kept/);
    expect(existsSync(path.join(d.dataDir, 'files/lab/other'))).toBe(false);
    const ok = await run(['files', 'upload', p, 'lab/other', '--sha256', sha(readFileSync(p)).toUpperCase()]);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('usage errors: missing LOCAL, a directory, a bad --sha256, no arguments', async () => {
    expect((await run(['files', 'upload', path.join(tmp, 'nope'), 'x'])).code).toBe(2);
    expect((await run(['files', 'upload', tmp, 'x'])).code).toBe(2);
    const bad = await run(['files', 'upload', local('y', Buffer.from('y')), 'y', '--sha256', 'abc']);
    expect(bad.code).toBe(2);
    expect((await run(['files', 'upload'])).code).toBe(2);
    expect((await run(['files', 'frob'])).code).toBe(2);
  });

  it('a path with .. is refused before anything is sent; one the daemon refuses is exit 1 with its detail', async () => {
    const dots = await run(['files', 'upload', local('z', Buffer.from('z')), 'a/../../b']);
    expect(dots.code).toBe(2);
    expect(dots.stderr).toMatch(/'\.\.' segment/);
    const r = await run(['files', 'upload', local('z', Buffer.from('z')), 'a\\b']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^plinth: upload of a\\b failed: .*refused/);
  });

  it('checks the digest the server answers (a server that stores something else is caught)', async () => {
    const seen: http.IncomingHttpHeaders[] = [];
    const fake = http.createServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ path: 'x', size: kernel.length, sha256: 'f'.repeat(64), url: '/files/x' }));
      });
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    try {
      const port = (fake.address() as AddressInfo).port;
      const p = local('k2', kernel);
      const r = await cli(['files', 'upload', p, 'x', '--endpoint', `http://127.0.0.1:${port}`, '--token', 't']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/the daemon stored x with sha256 f{64}.*but .* has [0-9a-f]{64}/);
      // The digest was computed first and sent for the daemon to verify, with the length declared.
      expect(seen[0]!['x-checksum-sha256']).toBe(sha(kernel));
      expect(seen[0]!['content-length']).toBe(String(kernel.length));
      expect(seen[0]!.authorization).toBe('Bearer t');
    } finally {
      fake.close();
    }
  });

  it('streams: a 192 MiB file uploads with a small, flat memory footprint', async () => {
    const big = path.join(tmp, 'big.img');
    writeFileSync(big, '');
    truncateSync(big, 192 * 1024 * 1024);
    const probe =
      'data:text/javascript,process.on("exit",()=>process.stderr.write("maxrss="+process.resourceUsage().maxRSS+"\\n"))';
    const r = await run(['files', 'upload', big, 'big.img'], { node: ['--import', probe], timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json().size).toBe(192 * 1024 * 1024);
    const kb = Number(/maxrss=(\d+)/.exec(r.stderr)?.[1]);
    // tsx and node take ~100 MB; reading the file whole would add 192 MiB.
    expect(kb).toBeGreaterThan(0);
    expect(kb).toBeLessThan(190 * 1024);
    rmSync(path.join(d.dataDir, 'files/big.img'));
  }, 180_000);

  it.skipIf(!existsSync('/usr/bin/script'))('draws a progress bar when stderr is a terminal', async () => {
    const p = local('tty.bin', randomBytes(2 * 1024 * 1024));
    const out = await cliInTty(['files', 'upload', p, 'tty.bin'], { PLINTH_ENDPOINT: d.url, PLINTH_TOKEN: d.token });
    expect(out.code, out.text).toBe(0);
    expect(out.text).toMatch(/\x1b\[1Ghashing tty\.bin \[#{24}\] 100%/);
    expect(out.text).toMatch(/\x1b\[1Guploading tty\.bin \[#{24}\] 100% 2\.0 MiB \/ 2\.0 MiB/);
    // On a terminal the default output is a table.
    expect(out.text).toMatch(/FIELD\s+VALUE/);
  });
});
