/**
 * Issue 16, item 1 end to end: a bootenv boots the bytes it pinned, whatever its path holds later. Bootenv A pins
 * vmlinuz v1; vmlinuz is PUT again (v2) and bootenv B pins that; a machine on A gets v1 over HTTP and TFTP, on B
 * v2, and assigning A again rolls back. Readiness, gc (never a pinned blob; bytes freed) and dedupe ride along.
 */
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { tftpGet } from '../tftp/client.js';

let d: TestDaemon;
let tftpPort: number;
const v1 = Buffer.from('kernel version one\n');
const v2 = Buffer.from('kernel version two, longer\n');
const initrd = Buffer.from('initrd bytes\n');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const put = async (p: string, body: Buffer) => {
  const r = await fetch(`${d.url}/api/v1/files/${p}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${d.token}` },
    body,
  });
  expect(r.status).toBeLessThan(300);
  return r.json();
};
/** The URLs the machine's iPXE script names for its kernel and initrd. */
const script = async (mac: string) => {
  const r = await fetch(`${d.url}/boot/ipxe/${mac}`);
  expect(r.status).toBe(200);
  const text = await r.text();
  const kernel = /^kernel (\S+)/m.exec(text)?.[1];
  const initrdUrl = /^initrd (\S+)/m.exec(text)?.[1];
  return { text, kernel: kernel!, initrd: initrdUrl! };
};
const bytes = async (url: string) => Buffer.from(await (await fetch(url)).arrayBuffer());
const overTftp = async (url: string) => {
  const rel = new URL(url).pathname.replace(/^\/files\//, '');
  const r = await tftpGet(tftpPort, decodeURIComponent(rel));
  expect(r.error).toBeUndefined();
  return r.data;
};
const blobs = () =>
  readdirSync(path.join(d.dataDir, 'files/.blobs/sha256'), { recursive: true }).filter((n) =>
    /[0-9a-f]{64}$/.test(String(n)),
  ).length;

beforeAll(async () => {
  d = await startTestDaemon({ tftp: true, tftpPort: 0 });
  tftpPort = (await d.api('GET', '/api/v1/info')).body.listeners.tftp.port;
});
afterAll(async () => {
  await d.stop();
});

describe('immutable, content-addressed boot files', () => {
  it('a bootenv boots what it pinned: a PUT over its path changes nothing for it, and assigning it again rolls back', async () => {
    await put('os/vmlinuz', v1);
    await put('os/initrd.gz', initrd);
    const a = await d.api('POST', '/api/v1/bootenvs', {
      name: 'A',
      kernel: 'os/vmlinuz',
      initrds: ['os/initrd.gz'],
      artifacts: [
        { path: 'os/vmlinuz', sha256: sha(v1) },
        { path: 'os/initrd.gz', sha256: sha(initrd) },
      ],
    });
    expect(a.status).toBe(201);
    await d.api('POST', '/api/v1/machines', { name: 'on-a', macs: ['52:54:00:16:00:01'], bootEnv: 'A' });

    const before = await script('52-54-00-16-00-01');
    expect(before.kernel).toBe(`${d.url}/files/os/vmlinuz`); // the path still holds the pinned bytes
    expect(await bytes(before.kernel)).toEqual(v1);

    await put('os/vmlinuz', v2);
    const b = await d.api('POST', '/api/v1/bootenvs', {
      name: 'B',
      kernel: 'os/vmlinuz',
      initrds: ['os/initrd.gz'],
      artifacts: [
        { path: 'os/vmlinuz', sha256: sha(v2) },
        { path: 'os/initrd.gz', sha256: sha(initrd) },
      ],
    });
    expect(b.status).toBe(201);
    await d.api('POST', '/api/v1/machines', { name: 'on-b', macs: ['52:54:00:16:00:02'], bootEnv: 'B' });

    const onA = await script('52-54-00-16-00-01');
    expect(onA.kernel).toBe(`${d.url}/files/.blobs/views/${sha(v1)}/os/vmlinuz`);
    expect(onA.text).toContain('initrd=initrd.gz');
    expect(await bytes(onA.kernel)).toEqual(v1);
    expect(await overTftp(onA.kernel)).toEqual(v1);
    expect(await bytes(onA.initrd)).toEqual(initrd);

    const onB = await script('52-54-00-16-00-02');
    expect(await bytes(onB.kernel)).toEqual(v2);
    expect(await overTftp(onB.kernel)).toEqual(v2);

    // Roll back: the machine on B is assigned A again and boots v1.
    expect((await d.api('PATCH', '/api/v1/machines/on-b', { bootEnv: 'A' })).status).toBe(200);
    const back = await script('52-54-00-16-00-02');
    expect(await bytes(back.kernel)).toEqual(v1);
    expect(await overTftp(back.kernel)).toEqual(v1);
  });

  it('a root image named in bootParams by artifacts["<path>"] rolls back with its bootenv', async () => {
    const r1 = Buffer.from('squashfs root, build one\n');
    const r2 = Buffer.from('squashfs root, build two: other bytes\n');
    const live = (name: string, root: Buffer) => ({
      name,
      kernel: 'os/vmlinuz',
      bootParams: 'boot=live fetch={{ artifacts["live/filesystem.squashfs"] }} quiet',
      artifacts: [
        { path: 'os/vmlinuz', sha256: sha(v2) },
        { path: 'live/filesystem.squashfs', sha256: sha(root) },
      ],
    });
    const fetchUrl = async (mac: string) => /fetch=(\S+)/.exec((await script(mac)).text)![1]!;
    await put('live/filesystem.squashfs', r1);
    expect((await d.api('POST', '/api/v1/bootenvs', live('L1', r1))).status).toBe(201);
    await put('live/filesystem.squashfs', r2);
    expect((await d.api('POST', '/api/v1/bootenvs', live('L2', r2))).status).toBe(201);
    await d.api('POST', '/api/v1/machines', { name: 'live-1', macs: ['52:54:00:16:00:11'], bootEnv: 'L1' });
    await d.api('POST', '/api/v1/machines', { name: 'live-2', macs: ['52:54:00:16:00:12'], bootEnv: 'L2' });

    // The path holds build two now: L2 is served it by its path, L1 by the view of the blob it pinned.
    const u1 = await fetchUrl('52-54-00-16-00-11');
    const u2 = await fetchUrl('52-54-00-16-00-12');
    expect(u1).toBe(`${d.url}/files/.blobs/views/${sha(r1)}/live/filesystem.squashfs`);
    expect(u2).toBe(`${d.url}/files/live/filesystem.squashfs`);
    expect(await bytes(u1)).toEqual(r1);
    expect(await bytes(u2)).toEqual(r2);

    // Roll live-2 back to L1, then forward again: the URL, and the bytes, follow the bootenv.
    await d.api('PATCH', '/api/v1/machines/live-2', { bootEnv: 'L1' });
    expect(await bytes(await fetchUrl('52-54-00-16-00-12'))).toEqual(r1);
    await d.api('PATCH', '/api/v1/machines/live-2', { bootEnv: 'L2' });
    expect(await bytes(await fetchUrl('52-54-00-16-00-12'))).toEqual(r2);
    for (const m of ['live-1', 'live-2']) expect((await d.api('DELETE', `/api/v1/machines/${m}`)).status).toBe(204);
    for (const b of ['L1', 'L2']) expect((await d.api('DELETE', `/api/v1/bootenvs/${b}`)).status).toBe(204);
    expect((await d.api('DELETE', '/api/v1/files/live/filesystem.squashfs')).status).toBe(204);
  });

  it('a bootenv created without artifacts pins the files its text names too', async () => {
    const root = Buffer.from('a root image named only in bootParams\n');
    await put('named/root.squashfs', root);
    const c = await d.api('POST', '/api/v1/bootenvs', {
      name: 'N',
      kernel: 'os/vmlinuz',
      bootParams: "fetch={{ artifacts['named/root.squashfs'] }}",
    });
    expect(c.status).toBe(201);
    const pinned = (await d.api('GET', '/api/v1/bootenvs/N')).body.artifacts as { path: string; sha256: string }[];
    expect(pinned).toContainEqual({ path: 'named/root.squashfs', sha256: sha(root) });
    await put('named/root.squashfs', Buffer.from('changed after\n'));
    await d.api('POST', '/api/v1/machines', { name: 'on-n', macs: ['52:54:00:16:00:13'], bootEnv: 'N' });
    const url = /fetch=(\S+)/.exec((await script('52-54-00-16-00-13')).text)![1]!;
    expect(await bytes(url)).toEqual(root);
    expect((await d.api('DELETE', '/api/v1/machines/on-n')).status).toBe(204);
    expect((await d.api('DELETE', '/api/v1/bootenvs/N')).status).toBe(204);
    expect((await d.api('DELETE', '/api/v1/files/named/root.squashfs')).status).toBe(204);
    // Leave no blob of this test for the gc test below to count.
    expect((await d.api('POST', '/api/v1/files/gc')).body.removed).toHaveLength(4);
  });

  it('a bootenv created without artifacts is pinned to its current files, and keeps them after a PUT', async () => {
    await put('pin/vmlinuz', v1);
    expect((await d.api('POST', '/api/v1/bootenvs', { name: 'P', kernel: 'pin/vmlinuz' })).status).toBe(201);
    let artifacts: unknown;
    for (let i = 0; i < 100 && !artifacts; i++) {
      const be = await d.api('GET', '/api/v1/bootenvs/P');
      if (be.body.artifacts.length) artifacts = be.body.artifacts;
      else await new Promise((r) => setTimeout(r, 20));
    }
    expect(artifacts).toEqual([{ path: 'pin/vmlinuz', sha256: sha(v1) }]);
    await put('pin/vmlinuz', v2);
    await d.api('POST', '/api/v1/machines', { name: 'on-p', macs: ['52:54:00:16:00:03'], bootEnv: 'P' });
    expect(await bytes((await script('52-54-00-16-00-03')).kernel)).toEqual(v1);
    await d.api('PATCH', '/api/v1/machines/on-p', { bootEnv: 'B' });
    expect((await d.api('DELETE', '/api/v1/bootenvs/P')).status).toBe(204);
  });

  it('readiness: every pinned blob present; a missing one is named', async () => {
    const a = await d.api('GET', '/api/v1/bootenvs/A/status');
    expect(a.status).toBe(200);
    expect(a.body.ready).toBe(true);
    expect(a.body.missing).toEqual([]);
    expect(a.body.artifacts.map((x: { state: string }) => x.state)).toEqual(['present', 'present']);
    const c = await d.api('POST', '/api/v1/bootenvs', {
      name: 'C',
      kernel: 'os/nothing',
      artifacts: [{ path: 'os/nothing', sha256: 'c'.repeat(64) }],
    });
    expect(c.status).toBe(201);
    const s = await d.api('GET', '/api/v1/bootenvs/C/status');
    expect(s.body.ready).toBe(false);
    expect(s.body.missing).toEqual(['os/nothing']);
    expect(s.body.artifacts[0].detail).toBe('os/nothing is missing');
    expect((await d.api('GET', '/api/v1/bootenvs/nope/status')).status).toBe(404);
  });

  it('the same content is stored once; /files lists paths, never blobs', async () => {
    const n = blobs();
    await put('copy/initrd.gz', initrd);
    expect(blobs()).toBe(n);
    const list = (await d.api('GET', '/api/v1/files')).body as { path: string }[];
    expect(list.map((f) => f.path).some((p) => p.startsWith('.blobs'))).toBe(false);
    const intoStore = await d.api('PUT', '/api/v1/files/.blobs/sha256/ab/x', 'x');
    expect(intoStore.status).toBe(400);
    expect(intoStore.body.detail).toContain('the blob store is written only by Plinth');
  });

  it('gc removes only blobs nothing pins or links, reports the bytes freed, and is admin-only', async () => {
    const orphan = Buffer.from('an orphan\n');
    await put('tmp/orphan', orphan);
    expect((await d.api('DELETE', '/api/v1/files/tmp/orphan')).status).toBe(204);
    // v1 is linked by no path any more (os/vmlinuz is v2) but A pins it: it must stay.
    const r = await d.api('POST', '/api/v1/files/gc');
    expect(r.status).toBe(200);
    expect(r.body.removed).toEqual([{ sha256: sha(orphan), size: orphan.length }]);
    expect(r.body.freedBytes).toBe(orphan.length);
    const again = await d.api('POST', '/api/v1/files/gc');
    expect(again.body.freedBytes).toBe(0);
    const onA = await script('52-54-00-16-00-01');
    expect(await bytes(onA.kernel)).toEqual(v1);

    const viewer = await d.api('POST', '/api/v1/tokens', { name: 'v', role: 'viewer' });
    const denied = await fetch(`${d.url}/api/v1/files/gc`, {
      method: 'POST',
      headers: { authorization: `Bearer ${viewer.body.token}` },
    });
    expect(denied.status).toBe(403);

    // Once no bootenv pins v1, gc frees it (and its view).
    await d.api('PATCH', '/api/v1/machines/on-a', { bootEnv: 'B' });
    await d.api('PATCH', '/api/v1/machines/on-b', { bootEnv: 'B' });
    expect((await d.api('DELETE', '/api/v1/bootenvs/A')).status).toBe(204);
    const freed = await d.api('POST', '/api/v1/files/gc');
    expect(freed.body.removed).toEqual([{ sha256: sha(v1), size: v1.length }]);
    expect((await fetch(`${d.url}/files/.blobs/views/${sha(v1)}/os/vmlinuz`)).status).toBe(404);
  });
});
