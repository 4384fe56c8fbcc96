import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { mergeDiff, mergeIsNoop, normalise, plan } from '../../src/cli/apply.js';
import type { TestDaemon } from '../helpers/daemon.js';
import { type CliSuite, cliInProcess, useCliDaemon } from './run.js';

let d: TestDaemon;
let run: CliSuite['run'];
let tmp: string;
useCliDaemon('plinth-cli-apply-', (s) => {
  ({ d, run, tmp } = s);
});

const file = (name: string, text: string) => {
  const p = path.join(tmp, name);
  writeFileSync(p, text);
  return p;
};

const LAB = `kind: bootenv
name: ap-env
kernel: ap/vmlinuz
---
kind: subnet
name: ap-net
subnet: 10.78.0.0/24
activeStart: 10.78.0.10
activeEnd: 10.78.0.20
---
kind: reservation
address: 10.78.0.5
mac: 52:54:00:ab:cd:01
subnet: ap-net
---
kind: machine
name: ap-m1
macs: [52:54:00:ab:cd:02]
bootEnv: ap-env
params: { role: web }
`;

describe('merge patches (RFC 7396) as apply compares them', () => {
  it('a field equal, a nested object contained, a null for an absent field: no change', () => {
    expect(mergeIsNoop({ a: 1, o: { x: 1 } }, { a: 1, o: { x: 1, y: 2 }, z: 3 })).toBe(true);
    expect(mergeIsNoop({ gone: null }, { a: 1 })).toBe(true);
    expect(mergeIsNoop({ a: null }, { a: 1 })).toBe(false);
    expect(mergeIsNoop({ l: [1, 2] }, { l: [1, 2, 3] })).toBe(false);
    expect(mergeIsNoop({ o: { x: 1 } }, { o: 'x' })).toBe(false);
  });

  it('the patch holds only the top-level fields that differ', () => {
    expect(mergeDiff({ name: 'n', a: 1, b: [1], uuid: 'u' }, { name: 'n', a: 2, b: [1] })).toEqual({ a: 2 });
  });

  it('documents are compared as the server spells them, field by field, without its defaults', () => {
    expect(normalise('machines', { name: 'm', macs: ['52-54-00-AB-CD-EF'] })).toEqual({
      name: 'm',
      macs: ['52:54:00:ab:cd:ef'],
    });
    // A value the schema refuses stays as written (the server says why); a null (merge-patch removal) stays null.
    expect(normalise('reservations', { mac: 'nonsense', nextServer: null })).toEqual({
      mac: 'nonsense',
      nextServer: null,
    });
  });

  it('every document is typed and named before any request', () => {
    expect(plan([{ kind: 'machine', name: 'm' }], undefined)).toEqual([
      { kind: 'machines', name: 'm', body: { name: 'm' } },
    ]);
    expect(() => plan([{ name: 'm' }], undefined)).toThrow(/document 1 of 1 has no kind/);
    expect(() => plan([{ kind: 'lease', address: '10.0.0.1' }], undefined)).toThrow(/read-only/);
    expect(() => plan([{ kind: 'nosuch' }], undefined)).toThrow(/kind 'nosuch'/);
    expect(() => plan([{ kind: 'bootenv', kernel: 'k' }], undefined)).toThrow(/has no name/);
    expect(() => plan([{ kind: 'subnet', name: 's' }], 'machines')).toThrow(/is a subnet, not a machine/);
  });
});

describe('plinth apply against a live daemon', () => {
  it('creates, then changes nothing the second time; --dry-run writes nothing', async () => {
    const f = file('lab.yaml', LAB);
    const dry = await run(['apply', '-f', f, '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.json().map((o: { result: string }) => o.result)).toEqual(Array(4).fill('would create'));
    expect((await d.api('GET', '/api/v1/machines/ap-m1')).status).toBe(404);

    const first = await run(['apply', '-f', f]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.json()).toEqual([
      { document: 1, kind: 'bootenv', name: 'ap-env', result: 'created' },
      { document: 2, kind: 'subnet', name: 'ap-net', result: 'created' },
      { document: 3, kind: 'reservation', name: '10.78.0.5', result: 'created' },
      { document: 4, kind: 'machine', name: 'ap-m1', result: 'created' },
    ]);
    expect(first.stderr).toMatch(/applied: 4 created/);
    const before = await d.api('GET', '/api/v1/machines/ap-m1');

    const second = await run(['apply', '-f', f]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.json().map((o: { result: string }) => o.result)).toEqual(Array(4).fill('unchanged'));
    const after = await d.api('GET', '/api/v1/machines/ap-m1');
    // Nothing was written: the same version of the machine.
    expect(after.headers.get('etag')).toBe(before.headers.get('etag'));
  });

  it('a file the server normalises (MAC spelling, option values, defaults filled) is unchanged the second time', async () => {
    const f = file(
      'norm.yaml',
      `kind: subnet
name: ap-norm
subnet: 10.79.0.0/24
options:
  - { code: 42, value: "10.79.0.1, 10.79.0.2" }
---
kind: reservation
address: 10.79.0.5
mac: 52-54-00-AB-CD-11
subnet: ap-norm
---
kind: machine
name: ap-norm-m
macs: [52-54-00-AB-CD-12]
`,
    );
    const first = await run(['apply', '-f', f]);
    expect(first.code, first.stderr).toBe(0);
    const stored = (await d.api('GET', '/api/v1/subnets/ap-norm')).body;
    // The server did rewrite what the file says, and filled in what it does not.
    expect(stored.options).toEqual([{ code: 42, value: ['10.79.0.1', '10.79.0.2'] }]);
    expect(stored.leaseTime).toBe(3600);
    expect((await d.api('GET', '/api/v1/machines/ap-norm-m')).body.macs).toEqual(['52:54:00:ab:cd:12']);
    const before = await d.api('GET', '/api/v1/machines/ap-norm-m');
    const second = await run(['apply', '-f', f]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.json().map((o: { result: string }) => o.result)).toEqual(Array(3).fill('unchanged'));
    const after = await d.api('GET', '/api/v1/machines/ap-norm-m');
    expect(after.headers.get('etag')).toBe(before.headers.get('etag'));
  });

  it('updates only what differs, by name, and RESOURCE apply takes documents without a kind', async () => {
    const f = file('m.yaml', 'name: ap-m1\ndescription: changed\nparams: { role: db }\n');
    const dry = await run(['machines', 'apply', '-f', f, '--dry-run']);
    expect(dry.json()).toEqual([
      { document: 1, kind: 'machine', name: 'ap-m1', result: 'would update', changed: ['description', 'params'] },
    ]);
    const r = await run(['machine', 'apply', '-f', f]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()[0]).toMatchObject({ result: 'updated', changed: ['description', 'params'] });
    const m = (await d.api('GET', '/api/v1/machines/ap-m1')).body;
    // Fields the file does not name are left as they were (a merge, not a replace).
    expect(m).toMatchObject({ description: 'changed', params: { role: 'db' }, bootEnv: 'ap-env' });
    expect(m.macs).toEqual(['52:54:00:ab:cd:02']);
  });

  it('a refused document stops there; the report says what was applied and what was not (exit 1)', async () => {
    const f = file(
      'bad.yaml',
      'kind: profile\nname: ap-p1\n---\nkind: machine\nname: ap-m2\nbootEnv: no-such-env\n---\nkind: profile\nname: ap-p2\n',
    );
    const r = await run(['apply', '-f', f]);
    expect(r.code).toBe(1);
    expect(r.json().map((o: { result: string }) => o.result)).toEqual(['created', 'failed', 'not attempted']);
    expect(r.stderr).toMatch(/^plinth: machine 'ap-m2' \(document 2 of 3\): .*no-such-env/);
    expect(r.stderr).toMatch(/applied before it: 1 created; 1 not attempted/);
    expect((await d.api('GET', '/api/v1/profiles/ap-p1')).status).toBe(200);
    expect((await d.api('GET', '/api/v1/profiles/ap-p2')).status).toBe(404);
  });

  it('a mistake in the file is a usage error before anything is sent', async () => {
    const f = file('nokind.yaml', 'kind: profile\nname: ap-p3\n---\nname: ap-p4\n');
    const r = await cliInProcess(['apply', '-f', f], { PLINTH_ENDPOINT: d.url, PLINTH_TOKEN: d.token });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^plinth: document 2 of 2 has no kind/);
    expect((await d.api('GET', '/api/v1/profiles/ap-p3')).status).toBe(404);
  });
});

describe('create -f with several documents', () => {
  it('a refusal names the document and what was created before it', async () => {
    const f = file('c.yaml', 'name: cr-1\n---\nname: cr-2\nbootEnv: no-such-env\n---\nname: cr-3\n');
    const r = await run(['profiles', 'create', '-f', file('p.yaml', 'name: cr-p\n')]);
    expect(r.code, r.stderr).toBe(0);
    const m = await run(['machines', 'create', '-f', f]);
    expect(m.code).toBe(1);
    expect(m.json().map((x: { name: string }) => x.name)).toEqual(['cr-1']);
    expect(m.stderr).toMatch(
      /^plinth: machine 'cr-2' \(document 2 of 3\) was not created: .*; created before it: 'cr-1'; not attempted: 1 more/,
    );
  });

  it('a clash with another machine names it by name, not by its uuid', async () => {
    const first = await run(['machines', 'create', '-f', '-'], { input: 'name: owner-1\nmacs: [52:54:00:ee:00:01]\n' });
    expect(first.code, first.stderr).toBe(0);
    const uuid = first.json().uuid;
    const r = await run(['machines', 'create', '-f', '-'], { input: 'name: thief\nmacs: [52:54:00:ee:00:01]\n' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("machine 'owner-1'");
    expect(r.stderr).not.toContain(uuid);
  });
});
