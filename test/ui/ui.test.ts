/**
 * The web page in a real browser: Playwright (playwright-core) driving Debian's chromium. An unknown machine
 * network-boots (its iPXE fetches /boot/ipxe/<mac>, which registers it) and must appear live; the operator
 * assigns it a bootenv by clicking. A screenshot is kept under test/artifacts/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium } from '../helpers/browser.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const ARTIFACTS = path.resolve(import.meta.dirname, '../artifacts');
let d: TestDaemon;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  d = await startTestDaemon();
  browser = await launchChromium(CHROMIUM);
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await d?.stop();
});

describe('/ui', () => {
  it('signs in with the token, shows a PXE-booting machine live, assigns a bootenv by clicking', async () => {
    expect(
      (await d.api('POST', '/api/v1/bootenvs', { name: 'lk-sshd', kernel: 'lk/kernel', initrds: ['lk/initrd.img'] }))
        .status,
    ).toBe(201);
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(`${d.url}/ui`);
    await page.fill('#token', 'wrong');
    await page.click('#login-form button');
    await expect.poll(() => page.textContent('#login-error')).toContain('refused');
    await page.fill('#token', d.token);
    await page.click('#login-form button');
    await page.waitForSelector('#app:not([hidden])');
    await expect.poll(() => page.textContent('#status'), { timeout: 10_000 }).toBe('live');

    // The machine's firmware asks for its script: Plinth registers it (it holds this daemon's lease: evidence);
    // the page must show it without a reload.
    d.daemon.bus.emit({
      type: 'lease.acked',
      key: '127.0.0.1',
      data: { mac: '52:54:00:0a:0b:0c', subnet: 'test', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
    const r = await fetch(`${d.url}/boot/ipxe/52-54-00-0a-0b-0c?arch=x86_64`);
    expect(r.status).toBe(200);
    const row = page.locator('#machines tr[data-name="d-5254000a0b0c"]');
    await row.waitFor({ timeout: 10_000 });
    expect(await row.locator('td.bootenv').textContent()).toBe('discovery');

    await row.click();
    await page.waitForSelector('#detail-body:not([hidden])');
    await expect.poll(() => page.locator('#boots tbody tr').count()).toBeGreaterThan(0);
    await page.selectOption('#assign-bootenv', 'lk-sshd');
    await page.click('#assign-button');
    await expect.poll(() => page.textContent('#assign-result')).toBe('assigned');
    await expect.poll(() => row.locator('td.bootenv').textContent()).toBe('lk-sshd');
    const m = await d.api('GET', '/api/v1/machines/d-5254000a0b0c');
    expect(m.body.bootEnv).toBe('lk-sshd');

    // The token lives in this tab's sessionStorage only: a script that runs on this origin later finds nothing
    // in localStorage.
    const stored = (where: string) => page.evaluate(`${where}.getItem('plinth.token')`);
    expect(await stored('localStorage')).toBeNull();
    expect(await stored('sessionStorage')).toBe(d.token);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui.png'), fullPage: true });
  });
});
