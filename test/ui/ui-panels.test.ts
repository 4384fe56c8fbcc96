/**
 * What /ui shows an operator without waiting for events, in a real browser (playwright-core + Debian's chromium):
 * each machine's last boot read from the API after a reload, a machine's MACs, arch, params (redacted for a viewer
 * token, as the API does) and inventory, bootenvs that cannot boot flagged with why, subnets with their free
 * addresses, and leases.
 */
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium } from '../helpers/browser.js';
import { type ApiResponse, startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const ARTIFACTS = path.resolve(import.meta.dirname, '../artifacts');
let d: TestDaemon;
let browser: Browser;
let uuid: string;
let viewer: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  d = await startTestDaemon();
  browser = await launchChromium(CHROMIUM);
  const ok = async (p: Promise<ApiResponse>, status = 201) => {
    const r = await p;
    expect(r.status, r.text).toBe(status);
    return r;
  };
  // One bootenv whose files are there, one whose kernel is not.
  const kernel = await fetch(`${d.url}/api/v1/files/ok/vmlinuz`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${d.token}`, 'content-type': 'application/octet-stream' },
    body: 'kernel bytes',
  });
  expect(kernel.status).toBeLessThan(300);
  await ok(d.api('POST', '/api/v1/bootenvs', { name: 'be-ready', kernel: 'ok/vmlinuz' }));
  await ok(d.api('POST', '/api/v1/bootenvs', { name: 'be-broken', kernel: 'gone/vmlinuz' }));
  // A new kernel uploaded to the same path: be-ready keeps booting the one it pinned, so it is still ready.
  const v2 = await fetch(`${d.url}/api/v1/files/ok/vmlinuz`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${d.token}`, 'content-type': 'application/octet-stream' },
    body: 'kernel bytes, version 2',
  });
  expect(v2.status).toBeLessThan(300);
  await ok(d.api('POST', '/api/v1/params', { name: 'rootpw', schema: { type: 'string' }, secure: true }));
  await ok(
    d.api('POST', '/api/v1/subnets', {
      name: 'lab',
      subnet: '10.9.0.0/24',
      activeStart: '10.9.0.10',
      activeEnd: '10.9.0.19',
    }),
  );
  const m = await ok(
    d.api('POST', '/api/v1/machines', {
      name: 'web1',
      macs: ['52:54:00:12:34:56'],
      arch: 'arm64',
      bootEnv: 'be-ready',
      params: { rootpw: 'hunter2-secret', role: 'web' },
    }),
  );
  uuid = m.body.uuid;
  await ok(d.api('PUT', `/api/v1/machines/${uuid}/inventory`, { cpu: { model: 'Neoverse-N1', cores: 80 } }), 200);
  await d.daemon.store.create(
    'leases',
    '10.9.0.12',
    {
      address: '10.9.0.12',
      mac: '52:54:00:12:34:56',
      subnet: 'lab',
      state: 'bound',
      expiresAt: '2099-01-01T00:00:00Z',
    },
    [],
  );
  // A boot of web1, recorded before any page is open: the page can only learn it from the API.
  d.daemon.bus.emit({
    type: 'lease.acked',
    key: '127.0.0.1',
    data: { mac: '52:54:00:12:34:56', subnet: 'lab', expiresAt: '2099-01-01T00:00:00.000Z' },
  });
  expect((await fetch(`${d.url}/boot/ipxe/52-54-00-12-34-56`)).status).toBe(200);
  const t = await ok(d.api('POST', '/api/v1/tokens', { name: 'ui-viewer', role: 'viewer' }));
  viewer = t.body.token;
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await d?.stop();
});

async function signIn(token: string): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${d.url}/ui`);
  await page.fill('#token', token);
  await page.click('#login-form button');
  await page.waitForSelector('#app:not([hidden])');
  return page;
}

describe('/ui panels', () => {
  it("shows each machine's last boot from the API, also after a reload", async () => {
    const boots = await d.api('GET', `/api/v1/machines/${uuid}/boots`);
    expect(boots.body.length).toBeGreaterThan(0);
    const page = await signIn(d.token);
    const cell = page.locator(`#machines tr[data-uuid="${uuid}"] td.lastboot`);
    await expect.poll(() => cell.textContent(), { timeout: 10_000 }).toContain('be-ready');
    await page.reload();
    await page.waitForSelector('#app:not([hidden])');
    await expect.poll(() => cell.textContent(), { timeout: 10_000 }).toContain('be-ready');
    expect(await page.locator(`#machines tr[data-uuid="${uuid}"] td.arch`).textContent()).toBe('arm64');
    await page.close();
  });

  it("shows a machine's MACs, arch, inventory and params, secure ones redacted for a viewer", async () => {
    const page = await signIn(viewer);
    await page.click(`#machines tr[data-uuid="${uuid}"]`);
    await page.waitForSelector('#detail-body:not([hidden])');
    await expect.poll(() => page.textContent('#facts [data-fact="MACs"]')).toBe('52:54:00:12:34:56');
    expect(await page.textContent('#facts [data-fact="arch"]')).toBe('arm64');
    await expect.poll(() => page.textContent('#inventory')).toContain('Neoverse-N1');
    expect(await page.textContent('#params tr[data-param="role"]')).toContain('"web"');
    const pw = await page.textContent('#params tr[data-param="rootpw"]');
    expect(pw).toContain('rootpw');
    expect(await page.content()).not.toContain('hunter2');
    await page.close();
  });

  it('shows the secure param to an admin token (the API decides, the page only shows)', async () => {
    const page = await signIn(d.token);
    await page.click(`#machines tr[data-uuid="${uuid}"]`);
    await expect.poll(() => page.textContent('#params tr[data-param="rootpw"]')).toContain('hunter2-secret');
    await expect.poll(() => page.textContent('#inventory')).toContain('Neoverse-N1');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-panels.png'), fullPage: true });
    await page.close();
  });

  it('flags bootenvs that cannot boot, lists subnets with free addresses, and leases', async () => {
    const page = await signIn(viewer);
    const ready = page.locator('#bootenvs tr[data-name="be-ready"] td.ready');
    const broken = page.locator('#bootenvs tr[data-name="be-broken"] td.ready');
    await expect.poll(() => broken.textContent()).toContain('not ready');
    expect(await broken.textContent()).toContain('kernel gone/vmlinuz is not in the files');
    expect((await ready.textContent())?.trim()).toBe('ready');
    expect(await page.textContent('#subnets tr[data-name="lab"] td.free')).toBe('9 / 10');
    expect(await page.textContent('#leases tbody')).toContain('10.9.0.12');
    await page.close();
  });
});
