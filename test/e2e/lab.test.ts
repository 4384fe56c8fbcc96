import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nsCurl } from '../../src/lab/api.js';
import { labDown } from '../../src/lab/lab.js';
import { createNamespace, deleteNamespace, type NsProcess, namespaces, runIn } from '../../src/lab/netns.js';
import { launchChromium } from '../helpers/browser.js';
import { buildImages, labBootenv, ROOT, startPlinth } from './setup.js';

const SRV = 'plinth-e2e-labsrv';
const TOKEN = 'e2e-lab-token-0123456789abcdefghijkl';
const WORK = path.join(ROOT, '.lab/e2e-lab');
const LABDIR = path.join(WORK, 'lab');
const api = nsCurl(SRV, 'http://127.0.0.1:8091', TOKEN);
let plinth: NsProcess;
let browser: Browser | undefined;

const cli = (...args: string[]) =>
  runIn(
    SRV,
    [
      'env',
      `PLINTH_ENDPOINT=http://127.0.0.1:8091`,
      `PLINTH_TOKEN=${TOKEN}`,
      process.execPath,
      '--import',
      'tsx',
      path.join(ROOT, 'bin/plinth.js'),
      ...args,
    ],
    120_000,
    { netOnly: true },
  );

beforeAll(async () => {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  buildImages();
  createNamespace(SRV);
  // No --dhcp-interfaces: Plinth serves each interface whose address is in an enabled subnet, so the lab's
  // veth (created later by `lab up`) is picked up when it appears.
  ({ plinth } = await startPlinth(SRV, WORK, TOKEN, 'http://127.0.0.1:8091'));
  await labBootenv(api, 'lab-a', 'vmlinuz', 'lab-a.img');
}, 900_000);

afterAll(async () => {
  await browser?.close();
  labDown(LABDIR);
  if (plinth) {
    await plinth.stop();
    writeFileSync(path.join(WORK, 'plinth.log'), plinth.output());
  }
  deleteNamespace(SRV);
});

describe('plinth lab', () => {
  it('up --vms 2 boots both VMs from the running Plinth; status shows them; down removes only what it made', async () => {
    // The operator's browser, next to Plinth (chromium runs inside the server's namespace), signed in before the lab.
    const wrapper = path.join(WORK, 'chromium-in-ns.sh');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${SRV} /usr/bin/chromium "$@"\n`, { mode: 0o755 });
    browser = await launchChromium(wrapper);
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto('http://127.0.0.1:8091/ui');
    await page.fill('#token', TOKEN);
    await page.click('#login-form button');
    await expect.poll(() => page.textContent('#status'), { timeout: 15_000 }).toBe('live');

    const up = cli('lab', 'up', '--name', 'lab', '--vms', '2', '--bootenv', 'lab-a', '--dir', LABDIR, '--bmc', 'ipmi');
    expect(up.code, up.stderr + up.stdout).toBe(0);
    expect(up.stdout).toContain('lab-vm-1');
    expect(up.stdout).toContain('lab-vm-2');
    const logs = [1, 2].map((i) => path.join(LABDIR, `serial-lab-vm-${i}.log`));
    const until = Date.now() + 300_000;
    const booted = () =>
      logs.every((f) => existsSync(f) && /PLINTH-LAB-BOOTED image=lab-a/.test(readFileSync(f, 'latin1')));
    while (!booted() && Date.now() < until) await new Promise((r) => setTimeout(r, 1000));
    expect(
      booted(),
      logs.map((f) => (existsSync(f) ? readFileSync(f, 'latin1').slice(-800) : 'no log')).join('\n---\n'),
    ).toBe(true);
    for (const name of ['lab-vm-1', 'lab-vm-2']) {
      const b = api.json('GET', `/api/v1/machines/${name}/boots`).body;
      expect(b[0].result, name).toBe('booted');
      expect(b[0].bootEnv).toBe('lab-a');
      // For the record (README: boot timings), never asserted: seconds from the ACK to each step.
      const ev = b[0].events as { at: string; kind: string; detail: string }[];
      const ack = ev.find((e) => e.kind === 'dhcp' && /acknowledged/.test(e.detail)) ?? ev[0]!;
      const at = (f: (e: { kind: string; detail: string }) => boolean) => {
        const e = ev.find(f);
        return e ? ((Date.parse(e.at) - Date.parse(ack.at)) / 1000).toFixed(1) : '-';
      };
      console.log(
        `${name}: ACK +0, GET /boot/ipxe +${at((e) => e.kind === 'http' && e.detail.includes('/boot/ipxe'))} s, ` +
          `kernel +${at((e) => e.kind === 'http' && e.detail.includes('vmlinuz'))} s, callback +${at((e) => e.kind === 'callback')} s`,
      );
    }
    // The page followed the boots live: both machines with the address DHCP gave them and their last boot.
    // Columns: name, MACs, arch, address, bootEnv, last boot, last seen.
    for (const name of ['lab-vm-1', 'lab-vm-2']) {
      const row = page.locator(`#machines tr[data-name="${name}"]`);
      await expect
        .poll(() => row.locator('td').nth(3).textContent(), { timeout: 20_000 })
        .toMatch(/^10\.250\.0\.1\d\d$/);
      await expect.poll(() => row.locator('td').nth(5).textContent(), { timeout: 20_000 }).toContain('lab-a');
    }
    await page.locator('#machines tr[data-name="lab-vm-1"]').click();
    await expect
      .poll(() => page.locator('#boots tbody tr').first().textContent(), { timeout: 10_000 })
      .toContain('booted');
    await page.selectOption('#assign-bootenv', 'local');
    await page.click('#assign-button');
    await expect.poll(() => page.textContent('#assign-result')).toBe('assigned');
    expect(api.json('GET', '/api/v1/machines/lab-vm-1').body.bootEnv).toBe('local');
    mkdirSync(path.join(ROOT, 'test/artifacts'), { recursive: true });
    await page.screenshot({ path: path.join(ROOT, 'test/artifacts/lab-ui.png'), fullPage: true });

    const status = cli('lab', 'status', '--dir', LABDIR);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/lab-vm-1 .*PLINTH-LAB-BOOTED/);
    const down = cli('lab', 'down', '--dir', LABDIR);
    expect(down.code).toBe(0);
    expect(namespaces()).not.toContain('plinth-lab');
    expect(namespaces()).toContain(SRV);
  });
});
