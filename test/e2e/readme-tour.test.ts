/**
 * The README's five-minute tour, every block as written (issue 14: the README cannot break again). The unit
 * suite's walk test runs the tour's API block; this one runs all of them, as an operator would on a fresh
 * machine: in a clean copy of the tree (git's files, no node_modules, no dist, no var), the install block
 * (`npm ci && sudo npm start &`, apt-get, build-images.sh, the loaders copied to assets/), the API block, then
 * `lab up` with two QEMU VMs, each behind its own IPMI BMC (ipmi_sim, the lab's default); step 4 (reprovision
 * lab-vm-1 to lab-a in /ui) is done through the API: Plinth sets PXE once and power-cycles the VM through its BMC,
 * and the test waits until the reprovision is done and lab-vm-1 has booted lab-a before the block's `lab down`.
 *
 * What the test provides is what the machine would have: root (`sudo` is a shim), Debian's package lists, npm's
 * cache (the namespace has no route to the registry) and the .debs build-images.sh downloads (copied from the lab
 * cache, so the run does not fetch 160 MB each time).
 * Everything runs in a network namespace of its own: the daemon's default ports and the lab's veth live there.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { labDown } from '../../src/lab/lab.js';
import { createNamespace, deleteNamespace } from '../../src/lab/netns.js';
import { tourScript } from '../readme/blocks.js';
import { buildImages, DEB_CACHE, ROOT } from './setup.js';

const NS = 'plinth-e2e-tour';
mkdirSync(path.join(ROOT, '.lab'), { recursive: true });
const work = mkdtempSync(path.join(ROOT, '.lab/tour-'));
const clone = path.join(work, 'plinth');

afterAll(() => {
  if (existsSync(path.join(clone, 'var/lab'))) labDown(path.join(clone, 'var/lab'));
  deleteNamespace(NS);
  rmSync(work, { recursive: true, force: true });
});

describe('the README five-minute tour runs verbatim', () => {
  it('installs, starts, builds images, uploads, boots two lab VMs, lab-vm-1 runs lab-a, and tears down', async () => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const t = tourScript(readme);
    expect(t.blocks).toHaveLength(2);
    expect(t.blocks[0]).toMatch(/npm ci && sudo npm start &/);
    expect(t.beforeStep4).toMatch(/plinth.js lab up/);
    expect(t.afterStep4).toMatch(/plinth.js lab down/);

    // A clean copy: what git has (tracked and new files), nothing built or installed.
    const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: ROOT, encoding: 'utf8' })
      .split('\0')
      .filter((f) => f && existsSync(path.join(ROOT, f)));
    for (const f of files) cpSync(path.join(ROOT, f), path.join(clone, f), { recursive: true });
    expect(existsSync(path.join(clone, 'node_modules'))).toBe(false);
    buildImages(); // fills the .deb cache once
    mkdirSync(path.join(clone, 'var/cache'), { recursive: true });
    for (const deb of execFileSync('ls', [DEB_CACHE], { encoding: 'utf8' })
      .split('\n')
      .filter((f) => f.endsWith('.deb')))
      cpSync(path.join(DEB_CACHE, deb), path.join(clone, 'var/cache', deb));
    mkdirSync(path.join(work, 'shim'));
    writeFileSync(path.join(work, 'shim/sudo'), '#!/bin/sh\nexec "$@"\n');
    chmodSync(path.join(work, 'shim/sudo'), 0o755);

    const token = path.join(clone, 'var/admin.token');
    // Step 4 as the operator does it in /ui: reprovision lab-vm-1 to lab-a (through its BMC); then wait until the
    // reprovision is done (bounded) and show its steps, the VM's power through the BMC and its serial line.
    const step4 = `TOKEN=$(cat var/admin.token)
api() { curl -sf --cacert var/tls/cert.pem -H "Authorization: Bearer $TOKEN" "$@"; }
api -H 'Content-Type: application/json' -X POST https://localhost:8443/api/v1/machines/lab-vm-1/actions/reprovision \\
  -d '{"bootEnv": "lab-a"}' > /dev/null
for i in $(seq 600); do
  api https://localhost:8443/api/v1/machines/lab-vm-1/actions/reprovision | grep -Eq '"step":"(done|failed)"' && break
  sleep 0.5
done
echo "reprovision: $(api https://localhost:8443/api/v1/machines/lab-vm-1/actions/reprovision)"
echo "power: $(api https://localhost:8443/api/v1/machines/lab-vm-1/power)"
grep -ao 'PLINTH-LAB-BOOTED image=lab-a[^\\r]*' var/lab/serial-lab-vm-1.log
`;
    // $! is block 1's `npm ci && sudo npm start &`: stop waiting if it ended (npm ci failed).
    const waitUp = `bg=$!
for i in $(seq 1800); do
  [ -s var/admin.token ] && curl -s -o /dev/null http://127.0.0.1:8091/api/v1/info && break
  kill -0 $bg 2>/dev/null || { echo "npm ci && npm start ended before the daemon answered"; exit 1; }
  sleep 0.5
done
`;
    writeFileSync(
      path.join(work, 'tour.sh'),
      [
        'set -eo pipefail',
        'ip link set lo up',
        'echo "### tour block 1"',
        t.blocks[0],
        // The operator reads on while npm ci runs and the daemon starts: the next block needs it answering.
        waitUp,
        'echo "### tour block 2"',
        t.blocks[1],
        'echo "### tour block 3 (to step 4)"',
        t.beforeStep4,
        'echo "### step 4 (by API)"',
        step4,
        'echo "### tour block 3 (from step 4)"',
        t.afterStep4,
        'echo "### tour done"',
      ].join('\n'),
    );
    createNamespace(NS);
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !/^PLINTH_|^CURL_|^npm_/.test(k)) env[k] = v;
    Object.assign(env, {
      HOME: work,
      PATH: `${path.join(work, 'shim')}:${process.env.PATH}`,
      npm_config_update_notifier: 'false',
      npm_config_fund: 'false',
      npm_config_audit: 'false',
      // The namespace has no route out: npm ci installs from the machine's npm cache (filled by the checkout's
      // own npm ci), and native modules build against this Node's own headers.
      npm_config_cache: path.join(homedir(), '.npm'),
      npm_config_offline: 'true',
      npm_config_nodedir: path.dirname(path.dirname(realpathSync(process.execPath))),
      DEBIAN_FRONTEND: 'noninteractive',
    });
    // Its own session: at the end every process the tour started in it (the daemon under `npm start &`) is stopped
    // with one signal to the group; the VMs, detached by `lab up`, are stopped by its `lab down` (or afterAll).
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        NS,
        'setsid',
        'bash',
        '-c',
        `bash ${path.join(work, 'tour.sh')}; rc=$?; trap "" TERM; kill -TERM 0; exit $rc`,
      ],
      {
        cwd: clone,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    const timer = setTimeout(() => child.kill('SIGKILL'), 1_700_000);
    const code = await new Promise<number | null>((resolve) =>
      child.on('close', (c, s) => resolve(c ?? (s ? 128 : -1))),
    );
    clearTimeout(timer);
    writeFileSync(path.join(ROOT, '.lab/tour.out'), out);
    expect(out, out.slice(-6000)).toContain('### tour done');
    expect(code, out.slice(-3000)).toBe(0);
    expect(out).toMatch(/PLINTH-LAB-BOOTED image=lab-a mac=52:54:00:1a:b0:01/);
    // Booted through its BMC: the reprovision went assign, PXE once, power cycle, DHCP, callback.
    const rp = JSON.parse(/^reprovision: (.*)$/m.exec(out)![1]!);
    expect(rp).toMatchObject({ bootEnv: 'lab-a', step: 'done' });
    expect(rp.steps.map((x: { step: string }) => x.step)).toEqual([
      'assign',
      'bootdev',
      'power',
      'dhcp',
      'booting',
      'done',
    ]);
    // The lab image powers off after its callback: the BMC reports what the VM did, on or (soon after) off.
    const power = JSON.parse(/^power: (.*)$/m.exec(out)![1]!);
    expect(power.driver).toBe('ipmi');
    expect(['on', 'off']).toContain(power.state);
    expect(out).toMatch(/^lab-vm-1 .* bmc ipmi 10\.250\.0\.254:6230$/m);
    expect(existsSync(token)).toBe(true);
  }, 1_800_000);
});
