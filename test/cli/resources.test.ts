import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import type { TestDaemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/proc.js';
import { type CliSuite, cli, cliInProcess, useCliDaemon } from './run.js';

let d: TestDaemon;
let run: CliSuite['run'];
let tmp: string;
useCliDaemon('plinth-cli-', (s) => {
  ({ d, run, tmp } = s);
});

const file = (name: string, text: string) => {
  const p = path.join(tmp, name);
  writeFileSync(p, text);
  return p;
};

/** One sample per writable resource, in an order where references exist (a reservation needs its subnet). */
const samples: { kind: string; id: string; doc: Record<string, unknown>; change: Record<string, unknown> }[] = [
  { kind: 'bootenvs', id: 't-env', doc: { name: 't-env', kernel: 't/vmlinuz' }, change: { description: 'changed' } },
  { kind: 'templates', id: 't-tpl', doc: { id: 't-tpl', contents: 'hello' }, change: { description: 'changed' } },
  {
    kind: 'subnets',
    id: 't-net',
    doc: { name: 't-net', subnet: '10.77.0.0/24', activeStart: '10.77.0.10', activeEnd: '10.77.0.20' },
    change: { leaseTime: 600 },
  },
  {
    kind: 'reservations',
    id: '10.77.0.5',
    doc: { address: '10.77.0.5', mac: '52:54:00:aa:bb:cc', subnet: 't-net' },
    change: { nextServer: '10.77.0.1' },
  },
  { kind: 'profiles', id: 't-prof', doc: { name: 't-prof', params: { a: 1 } }, change: { description: 'changed' } },
  { kind: 'params', id: 't-param', doc: { name: 't-param', schema: { type: 'string' } }, change: { secure: true } },
  { kind: 'machines', id: 't-m', doc: { name: 't-m', macs: ['52:54:00:00:00:01'] }, change: { bootEnv: 't-env' } },
];

describe('plinth RESOURCE verbs against a live daemon', () => {
  it('every writable resource: create -f, list, show, update -f -, patch --merge, delete', async () => {
    // Created in order (references must exist), then each resource's own steps run beside the others'.
    for (const s of samples) {
      const created = await run([s.kind, 'create', '-f', file(`${s.kind}.yaml`, YAML.stringify(s.doc))]);
      expect(created.code, created.stderr).toBe(0);
      expect(created.json()).toMatchObject(s.doc);
    }
    await Promise.all(
      samples.map(async (s) => {
        const [list, shown] = await Promise.all([run([s.kind, 'list']), run([s.kind, 'show', s.id])]);
        expect(list.code).toBe(0);
        expect(list.json()).toEqual(expect.arrayContaining([expect.objectContaining(s.doc)]));
        expect(shown.code).toBe(0);
        expect(shown.json()).toMatchObject(s.doc);

        const updated = await run([s.kind, 'update', s.id, '-f', '-'], {
          input: JSON.stringify({ ...s.doc, description: 'replaced' }),
        });
        expect(updated.code, updated.stderr).toBe(0);
        expect(updated.json()).toMatchObject({ description: 'replaced' });

        const patched = await run([s.kind, 'patch', s.id, '--merge', JSON.stringify(s.change)]);
        expect(patched.code, patched.stderr).toBe(0);
        expect(patched.json()).toMatchObject(s.change);
      }),
    );
    // Deleted in reverse order (a subnet in use by a reservation cannot go first).
    for (const s of [...samples].reverse()) {
      const del = await run([s.kind, 'delete', s.id]);
      expect(del.code, del.stderr).toBe(0);
      expect(del.stdout).toBe('');
    }
    const gone = await Promise.all(samples.map((s) => run([s.kind, 'show', s.id])));
    for (const g of gone) {
      expect(g.code).toBe(1);
      expect(g.stderr).toMatch(/^plinth: .*does not exist/);
    }
  }, 180_000);

  it('leases: list and show, and writes are a usage error (read-only)', async () => {
    const list = await run(['leases', 'list']);
    expect(list.code).toBe(0);
    expect(list.json()).toEqual([]);
    expect((await run(['leases', 'show', '10.0.0.1'])).code).toBe(1);
    const create = await run(['leases', 'create', '-f', '-'], { input: '{}' });
    expect(create.code).toBe(2);
    expect(create.stderr).toMatch(/read-only/);
    // The table names the daemon that last wrote each lease, and leaves the cell empty when none is named.
    const lease = (address: string, serverId?: string) => ({
      address,
      mac: `52:54:00:00:09:0${address.slice(-1)}`,
      subnet: 'lab',
      state: 'bound',
      expiresAt: '2099-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:00:00.000Z',
      ...(serverId ? { serverId } : {}),
    });
    await d.daemon.store.putBatched('leases', '10.0.0.2', lease('10.0.0.2', 'rack-a'));
    await d.daemon.store.putBatched('leases', '10.0.0.3', lease('10.0.0.3'));
    const t = await run(['leases', 'list', '-o', 'table']);
    const lines = t.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ADDRESS\s+MAC\s+SUBNET\s+STATE\s+EXPIRESAT\s+SERVERID$/);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^10\.0\.0\.2\s+52:54:00:00:09:02\s+lab\s+bound\s+2099-01-01T00:00:00\.000Z\s+rack-a$/),
      expect.stringMatching(/^10\.0\.0\.3\s+52:54:00:00:09:03\s+lab\s+bound\s+2099-01-01T00:00:00\.000Z$/),
    ]);
    await Promise.all(['10.0.0.2', '10.0.0.3'].map((a) => d.daemon.store.putBatched('leases', a, null)));
  });
});

describe('create, list, patch and update details', () => {
  it('creates every document of a multi-document YAML file (singular resource names work too)', async () => {
    const r = await run(['machine', 'create', '-f', file('two.yaml', 'name: m-a\n---\nname: m-b\n')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json().map((m: { name: string }) => m.name)).toEqual(['m-a', 'm-b']);
  });

  it('lists with FIELD=VALUE filters, --sort, --limit and --offset', async () => {
    await run(['machines', 'create', '-f', '-'], { input: '{"name":"m-c","description":"tagged"}' });
    const f = await run(['machines', 'list', 'description=tagged']);
    expect(f.json().map((m: { name: string }) => m.name)).toEqual(['m-c']);
    const sorted = await run(['machines', 'list', '--sort', '-name', '--limit', '2']);
    expect(sorted.json().map((m: { name: string }) => m.name)).toEqual(['m-c', 'm-b']);
    const page = await run(['machines', 'list', '--sort', 'name', '--limit', '1', '--offset', '1']);
    expect(page.json().map((m: { name: string }) => m.name)).toEqual(['m-b']);
    const bad = await run(['machines', 'list', 'nosuch=1']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/cannot filter machines by 'nosuch'/);
    expect((await run(['machines', 'list', 'notafilter'])).code).toBe(2);
  });

  it('patches with a JSON Patch (flag or file) and names the field an invalid merge patch breaks', async () => {
    const jp = await run([
      'machines',
      'patch',
      'm-a',
      '--json-patch',
      '[{"op":"add","path":"/macs/-","value":"52:54:00:00:00:0a"}]',
    ]);
    expect(jp.code, jp.stderr).toBe(0);
    expect(jp.json().macs).toEqual(['52:54:00:00:00:0a']);
    const fromFile = await run([
      'machines',
      'patch',
      'm-a',
      '-f',
      file('p.json', '[{"op":"replace","path":"/description","value":"from file"}]'),
    ]);
    expect(fromFile.json().description).toBe('from file');
    const mergeFile = await run(['machines', 'patch', 'm-a', '-f', file('m.yaml', 'description: merged\n')]);
    expect(mergeFile.json().description).toBe('merged');

    const bad = await run(['machines', 'patch', 'm-a', '--merge', '{"macs":["zz"],"name":"a b"}']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^plinth: machine is not valid/);
    // Every field error on its own line.
    expect(bad.stderr).toMatch(/macs\.0: expected a MAC address/);
    expect(bad.stderr).toMatch(/name: use letters/);
    expect(bad.stdout).toBe('');
  });

  it('usage errors exit 2: no patch, two patches, patch that is not JSON, missing -f, missing ID', async () => {
    for (const args of [
      ['machines', 'patch', 'm-a'],
      ['machines', 'patch', 'm-a', '--merge', '{}', '-f', 'x'],
      ['machines', 'patch', 'm-a', '--merge', '{nope'],
      ['machines', 'patch', 'm-a', '--json-patch', '{"op":"add"}'],
      ['machines', 'create'],
      ['machines', 'create', '-f', path.join(tmp, 'missing.yaml')],
      ['machines', 'create', '-f', file('broken.yaml', 'a: [1, 2\n')],
      ['machines', 'show'],
      ['machines', 'show', 'a', 'b'],
      ['machines', 'frobnicate'],
      ['machines'],
      ['nosuchthing', 'list'],
      ['machines', 'list', '--nosuchflag'],
      ['machines', 'list', '--output', 'xml'],
    ]) {
      const r = await cliInProcess(args, { PLINTH_ENDPOINT: d.url, PLINTH_TOKEN: d.token });
      expect(r.code, `plinth ${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/^plinth: /);
    }
    // And as a process: the exit status itself.
    const p = await run(['machines', 'patch', 'm-a']);
    expect(p.code).toBe(2);
    expect(p.stderr).toMatch(/^plinth: patch needs exactly one of --merge JSON, --json-patch JSON or -f FILE\nUsage:/);
  });

  it('update and delete honour --if-match (412 when stale: exit 1)', async () => {
    const fresh = await d.api('GET', '/api/v1/machines/m-b');
    const etag = fresh.headers.get('etag')!;
    const ok = await run(['machines', 'patch', 'm-b', '--merge', '{"description":"v2"}', '--if-match', etag]);
    expect(ok.code, ok.stderr).toBe(0);
    const stale = await run(['machines', 'update', 'm-b', '-f', '-', '--if-match', etag], { input: '{"name":"m-b"}' });
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/plinth: /);
    expect((await run(['machines', 'delete', 'm-b', '--if-match', etag.replace(/"/g, '')])).code).toBe(1);
  });

  it('machines params and boots', async () => {
    const g = await d.api('PUT', '/api/v1/profiles/global', { name: 'global', params: { 'ntp.server': '10.0.0.1' } });
    expect(g.status, g.text).toBeLessThan(300);
    const p = await run(['machines', 'params', 'm-a']);
    expect(p.code, p.stderr).toBe(0);
    expect(p.json()).toMatchObject({ 'ntp.server': '10.0.0.1' });
    const src = await run(['machines', 'params', 'm-a', '--sources']);
    expect(JSON.stringify(src.json())).toContain('global');
    const boots = await run(['machines', 'boots', 'm-a']);
    expect(boots.code).toBe(0);
    expect(boots.json()).toEqual([]);
    expect((await run(['machines', 'boots', 'nobody'])).code).toBe(1);
  });
});

describe('prefs, info, output formats', () => {
  it('prefs show and prefs set KEY=VALUE (JSON values typed, others strings)', async () => {
    const show = await run(['prefs', 'show']);
    expect(show.json()).toMatchObject({ defaultBootEnv: 'local' });
    const set = await run(['prefs', 'set', 'knownTokenTtl=600', 'rogueDhcpWarnings=false', 'defaultBootEnv=discovery']);
    expect(set.code, set.stderr).toBe(0);
    expect(set.json()).toMatchObject({ knownTokenTtl: 600, rogueDhcpWarnings: false, defaultBootEnv: 'discovery' });
    const bad = await run(['prefs', 'set', 'defaultBootEnv=nope']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/bootenv 'nope' does not exist/);
    expect((await run(['prefs', 'set', 'novalue'])).code).toBe(2);
    expect((await run(['prefs', 'set'])).code).toBe(2);
  });

  it('info needs no token', async () => {
    const r = await cli(['info'], { env: { PLINTH_ENDPOINT: d.url } });
    expect(r.code).toBe(0);
    expect(r.json()).toMatchObject({ name: 'plinth' });
  });

  it('--output yaml and table; -o works before the command too', async () => {
    const y = await run(['-o', 'yaml', 'machines', 'show', 'm-a']);
    expect(YAML.parse(y.stdout)).toMatchObject({ name: 'm-a' });
    const t = await run(['machines', 'list', '--output=table']);
    expect(t.stdout.split('\n')[0]).toMatch(/^UUID\s+NAME\s+MACS\s+ADDRESS\s+BOOTENV/);
    expect(t.stdout).toContain('m-a');
    const obj = await run(['machines', 'show', 'm-a', '-otable']);
    expect(obj.stdout).toMatch(/^FIELD\s+VALUE\n/);
    const env = await run(['machines', 'show', 'm-a'], { env: { PLINTH_OUTPUT: 'yaml' } });
    expect(YAML.parse(env.stdout)).toMatchObject({ name: 'm-a' });
  });

  it('help for the CLI and for each command exits 0', async () => {
    const h = await cli(['help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^Usage: plinth COMMAND/);
    for (const args of [
      ['machines', '--help'],
      ['machines', 'list', '-h'],
      ['help', 'files'],
      ['prefs', '--help'],
      ['bootenv', 'import-linuxkit', '--help'],
      ['bootenvs', 'fetch', '--help'],
      ['watch', '--help'],
      ['info', '--help'],
    ]) {
      const r = await cliInProcess(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^Usage: plinth /);
    }
  });
});

describe('endpoint and token', () => {
  it('reads the token from $PLINTH_DATA_DIR/admin.token, or ./var/admin.token in the working directory', async () => {
    const viaDir = await cli(['machines', 'list'], { env: { PLINTH_ENDPOINT: d.url, PLINTH_DATA_DIR: d.dataDir } });
    expect(viaDir.code, viaDir.stderr).toBe(0);
    const viaCwd = await cli(['machines', 'list', '--endpoint', `${d.url}/api/v1/`], { cwd: path.dirname(d.dataDir) });
    // cwd holds no var/: no token, a 401 that says how to give one.
    expect(viaCwd.code).toBe(1);
    expect(viaCwd.stderr).toMatch(/--token/);
    const withVar = mkdtempSync(path.join(tmpdir(), 'plinth-cwd-'));
    try {
      mkdirSync(path.join(withVar, 'var'));
      writeFileSync(path.join(withVar, 'var/admin.token'), `${d.token}\n`);
      const r = await cli(['machines', 'list', '--endpoint', d.url], { cwd: withVar });
      expect(r.code, r.stderr).toBe(0);
    } finally {
      rmSync(withVar, { recursive: true, force: true });
    }
  });

  it('a wrong token is exit 1 with a hint; --token beats PLINTH_TOKEN', async () => {
    const wrong = await run(['machines', 'list', '--token', 'nope']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/token from --token was refused/);
    const right = await cli(['machines', 'list', '--token', d.token], {
      env: { PLINTH_ENDPOINT: d.url, PLINTH_TOKEN: 'nope' },
    });
    expect(right.code).toBe(0);
  });

  it('an unreachable daemon is exit 1 with what to do; a bad endpoint is exit 2', async () => {
    const port = await freePort();
    const r = await cli(['machines', 'list', '--endpoint', `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`cannot reach Plinth at http://127\\.0\\.0\\.1:${port}: ECONNREFUSED.*--endpoint`),
    );
    expect((await cli(['machines', 'list', '--endpoint', 'ftp://x'])).code).toBe(2);
  });
});
