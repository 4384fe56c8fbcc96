import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDaemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/proc.js';
import { type CliSuite, cliInTty, useCliDaemon } from './run.js';

let d: TestDaemon;
let run: CliSuite['run'];
let tmp: string;
useCliDaemon('plinth-cli-be-', (s) => {
  ({ d, run, tmp } = s);
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** What `linuxkit build -format kernel+initrd -name PREFIX` leaves behind, small. */
function fakeBuild(prefix: string, kernel: Buffer, initrd: Buffer, cmdline: string) {
  writeFileSync(`${prefix}-kernel`, kernel);
  writeFileSync(`${prefix}-initrd.img`, initrd);
  writeFileSync(`${prefix}-cmdline`, cmdline);
}

describe('plinth bootenv import-linuxkit', () => {
  const kernel = randomBytes(64 * 1024);
  const initrd = randomBytes(200 * 1024);
  const cmdline = 'console=ttyS0 console=tty0 page_poison=1\n';

  it('uploads the three files and creates a bootenv pinned by their sha256', async () => {
    const prefix = path.join(tmp, 'sshd');
    fakeBuild(prefix, kernel, initrd, cmdline);
    const r = await run(['bootenv', 'import-linuxkit', prefix]);
    expect(r.code, r.stderr).toBe(0);
    const be = r.json();
    expect(be).toMatchObject({
      name: 'sshd',
      kernel: 'sshd/sshd-kernel',
      initrds: ['sshd/sshd-initrd.img'],
      bootParams: 'console=ttyS0 console=tty0 page_poison=1 initrd=sshd-initrd.img',
      os: { name: 'linuxkit' },
    });
    expect(be.artifacts).toEqual([
      { path: 'sshd/sshd-kernel', sha256: sha(kernel) },
      { path: 'sshd/sshd-initrd.img', sha256: sha(initrd) },
      { path: 'sshd/sshd-cmdline', sha256: sha(Buffer.from(cmdline)) },
    ]);
    // Stored in the daemon, and served to machines without a token.
    expect(readFileSync(path.join(d.dataDir, 'files/sshd/sshd-kernel')).equals(kernel)).toBe(true);
    const served = await fetch(`${d.url}/files/sshd/sshd-initrd.img`);
    expect(Buffer.from(await served.arrayBuffer()).equals(initrd)).toBe(true);
    expect((await d.api('GET', '/api/v1/bootenvs/sshd')).body.artifacts).toHaveLength(3);
  });

  it('refuses to import over an existing bootenv before uploading anything; --replace re-imports', async () => {
    const prefix = path.join(tmp, 'sshd');
    const kernel2 = randomBytes(1000);
    writeFileSync(`${prefix}-kernel`, kernel2);
    const clash = await run(['bootenvs', 'import-linuxkit', prefix]);
    expect(clash.code).toBe(1);
    expect(clash.stderr).toMatch(/bootenv 'sshd' already exists: .*--name.*--replace/);
    // The pinned bytes were not touched.
    expect(readFileSync(path.join(d.dataDir, 'files/sshd/sshd-kernel')).equals(kernel)).toBe(true);

    const again = await run(['bootenv', 'import-linuxkit', prefix, '--replace']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.json().artifacts[0]).toEqual({ path: 'sshd/sshd-kernel', sha256: sha(kernel2) });
  });

  it('--name picks the bootenv name and folder; a cmdline naming its initrd is kept as it is', async () => {
    const prefix = path.join(tmp, 'lk');
    fakeBuild(prefix, kernel, initrd, 'initrd=custom.img console=ttyS0');
    const r = await run(['bootenv', 'import-linuxkit', prefix, '--name', 'linuxkit-1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({
      name: 'linuxkit-1',
      kernel: 'linuxkit-1/lk-kernel',
      bootParams: 'initrd=custom.img console=ttyS0',
    });
  });

  it('missing build files or a bad name are usage errors (exit 2) and upload nothing', async () => {
    const prefix = path.join(tmp, 'half');
    writeFileSync(`${prefix}-kernel`, kernel);
    const r = await run(['bootenv', 'import-linuxkit', prefix]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/missing .*half-initrd\.img, .*half-cmdline/);
    expect(existsSync(path.join(d.dataDir, 'files/half'))).toBe(false);
    const prefix2 = path.join(tmp, 'ok');
    fakeBuild(prefix2, kernel, initrd, cmdline);
    const bad = await run(['bootenv', 'import-linuxkit', prefix2, '--name', 'no/slash']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bootenv name 'no\/slash'/);
    expect((await run(['bootenv', 'import-linuxkit'])).code).toBe(2);
  });
});

describe('plinth bootenv fetch (artifacts from a local upstream)', () => {
  const vmlinuz = randomBytes(1024 * 1024 + 3);
  const initrd = randomBytes(300 * 1024);
  let upstream: http.Server;
  let up: string;
  let hits: Record<string, number>;

  beforeAll(async () => {
    hits = {};
    upstream = http.createServer((req, res) => {
      hits[req.url!] = (hits[req.url!] ?? 0) + 1;
      if (req.url === '/vmlinuz') {
        res.writeHead(200, { 'content-length': String(vmlinuz.length) });
        return res.end(vmlinuz);
      }
      if (req.url === '/initrd') {
        // Chunked, no length: progress without a total.
        res.writeHead(200);
        res.write(initrd.subarray(0, 1000));
        return setTimeout(() => res.end(initrd.subarray(1000)), 20);
      }
      if (req.url === '/moved') {
        res.writeHead(302, { location: '/vmlinuz' });
        return res.end();
      }
      if (req.url === '/tampered') {
        res.writeHead(200);
        return res.end(Buffer.concat([vmlinuz.subarray(0, 100), Buffer.from('x')]));
      }
      res.writeHead(404);
      res.end('not here');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    up = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    upstream.close();
  });

  const bootenv = async (name: string, artifacts: { path: string; sha256: string; url?: string }[]) => {
    const r = await d.api('POST', '/api/v1/bootenvs', { name, kernel: artifacts[0]?.path ?? '', artifacts });
    expect(r.status, r.text).toBe(201);
  };

  it('downloads each artifact, checks its digest and uploads it; a second run skips what is there', async () => {
    await bootenv('upstream', [
      { path: 'up/vmlinuz', sha256: sha(vmlinuz), url: `${up}/vmlinuz` },
      { path: 'up/initrd', sha256: sha(initrd), url: `${up}/initrd` },
    ]);
    const r = await run(['bootenv', 'fetch', 'upstream']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toEqual([
      { path: 'up/vmlinuz', status: 'fetched', sha256: sha(vmlinuz), size: vmlinuz.length, url: `${up}/vmlinuz` },
      { path: 'up/initrd', status: 'fetched', sha256: sha(initrd), size: initrd.length, url: `${up}/initrd` },
    ]);
    expect(readFileSync(path.join(d.dataDir, 'files/up/vmlinuz')).equals(vmlinuz)).toBe(true);
    expect(readFileSync(path.join(d.dataDir, 'files/up/initrd')).equals(initrd)).toBe(true);

    const again = await run(['bootenv', 'fetch', 'upstream']);
    expect(again.json().map((a: { status: string }) => a.status)).toEqual(['present', 'present']);
    expect(hits['/vmlinuz']).toBe(1);
    const forced = await run(['bootenvs', 'fetch', 'upstream', '--force']);
    expect(forced.json().map((a: { status: string }) => a.status)).toEqual(['fetched', 'fetched']);
    expect(hits['/vmlinuz']).toBe(2);
  });

  it.skipIf(!existsSync('/usr/bin/script'))('shows download progress on a terminal', async () => {
    await bootenv('tty', [
      { path: 'tty/vmlinuz', sha256: sha(vmlinuz), url: `${up}/vmlinuz` },
      { path: 'tty/initrd', sha256: sha(initrd), url: `${up}/initrd` },
    ]);
    const out = await cliInTty(['bootenv', 'fetch', 'tty'], { PLINTH_ENDPOINT: d.url, PLINTH_TOKEN: d.token });
    expect(out.code, out.text).toBe(0);
    expect(out.text).toMatch(/\x1b\[1Gfetching tty\/vmlinuz \[#{24}\] 100% 1\.0 MiB \/ 1\.0 MiB/);
    // No length from upstream: bytes so far, no bar.
    expect(out.text).toMatch(/\x1b\[1Gfetching tty\/initrd 300\.0 KiB/);
    expect(out.text).toMatch(/PATH\s+STATUS\s+SIZE\s+SHA256\s+URL/);
  });

  it('follows redirects', async () => {
    await bootenv('moved', [{ path: 'moved/vmlinuz', sha256: sha(vmlinuz), url: `${up}/moved` }]);
    const r = await run(['bootenv', 'fetch', 'moved']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()[0].status).toBe('fetched');
  });

  it('bytes that differ from the pin: exit 1, says which digest it got, the daemon keeps nothing', async () => {
    await bootenv('tampered', [{ path: 'bad/vmlinuz', sha256: sha(vmlinuz), url: `${up}/tampered` }]);
    const r = await run(['bootenv', 'fetch', 'tampered']);
    expect(r.code).toBe(1);
    const got = sha(Buffer.concat([vmlinuz.subarray(0, 100), Buffer.from('x')]));
    expect(r.stderr).toContain(`served 101 B with sha256 ${got}, but bootenv pins bad/vmlinuz to ${sha(vmlinuz)}`);
    expect(existsSync(path.join(d.dataDir, 'files/bad/vmlinuz'))).toBe(false);
  });

  it('an upstream 404 or an unreachable upstream is exit 1 naming the url', async () => {
    await bootenv('gone', [{ path: 'gone/x', sha256: sha(vmlinuz), url: `${up}/nothing` }]);
    const r = await run(['bootenv', 'fetch', 'gone']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${up}/nothing answered HTTP 404`);
    const port = await freePort();
    await bootenv('down', [{ path: 'down/x', sha256: sha(vmlinuz), url: `http://127.0.0.1:${port}/x` }]);
    const down = await run(['bootenv', 'fetch', 'down']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot download http:\/\/127\.0\.0\.1:\d+\/x: ECONNREFUSED/);
  });

  it('an artifact without url that is not on the daemon fails with what to do; an unknown bootenv is exit 1', async () => {
    await bootenv('manual', [{ path: 'manual/x', sha256: sha(vmlinuz) }]);
    const r = await run(['bootenv', 'fetch', 'manual']);
    expect(r.code).toBe(1);
    expect(r.json()).toEqual([{ path: 'manual/x', status: 'missing', sha256: sha(vmlinuz) }]);
    expect(r.stderr).toMatch(/manual\/x has no url and is not on the daemon: upload with plinth files upload/);
    const none = await run(['bootenv', 'fetch', 'nosuch']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/does not exist/);
  });
});
