import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lease } from '../../src/model/subnet.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

let d: TestDaemon;
beforeAll(async () => {
  d = await startTestDaemon();
});
afterAll(async () => {
  await d.stop();
});

const problemOf = (r: { headers: Headers; body: any }) => {
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  return r.body as { status: number; title: string; detail: string; errors?: { path: string; message: string }[] };
};

describe('machines CRUD', () => {
  it('creates with 201, Location, ETag and a generated uuid', async () => {
    const r = await d.api('POST', '/api/v1/machines', { name: 'm1', macs: ['52-54-00-AA-00-01'] });
    expect(r.status).toBe(201);
    expect(r.body.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.body.macs).toEqual(['52:54:00:aa:00:01']);
    expect(r.body.bootEnv).toBe('local'); // defaultBootEnv pref
    expect(r.body.createdAt).toBeTruthy();
    expect(r.headers.get('location')).toBe(`/api/v1/machines/${r.body.uuid}`);
    expect(r.headers.get('etag')).toMatch(/^"[^"]+"$/);
    const g = await d.api('GET', r.headers.get('location')!);
    expect(g.status).toBe(200);
    expect(g.body).toEqual(r.body);
    expect(g.headers.get('etag')).toBe(r.headers.get('etag'));
  });

  it('finds a machine by name or MAC as well as by uuid', async () => {
    const byName = await d.api('GET', '/api/v1/machines/m1');
    expect(byName.status).toBe(200);
    const byMac = await d.api('GET', '/api/v1/machines/52:54:00:aa:00:01');
    expect(byMac.body.uuid).toBe(byName.body.uuid);
  });

  it('answers 304 to a matching If-None-Match', async () => {
    const g = await d.api('GET', '/api/v1/machines/m1');
    const r = await fetch(`${d.url}/api/v1/machines/m1`, {
      headers: { authorization: `Bearer ${d.token}`, 'if-none-match': g.headers.get('etag')! },
    });
    expect(r.status).toBe(304);
  });

  it('rejects a wrong type with 400 naming the field, and writes nothing', async () => {
    const r = await d.api('POST', '/api/v1/machines', { name: 'bad1', macs: 'not-a-list' });
    expect(r.status).toBe(400);
    const p = problemOf(r);
    expect(p.errors?.map((e) => e.path)).toContain('macs');
    expect(p.detail).toContain('macs');
    const l = await d.api('GET', '/api/v1/machines?name=bad1');
    expect(l.body).toEqual([]);
  });

  it('rejects an unknown field with 400 naming it', async () => {
    const r = await d.api('POST', '/api/v1/machines', { name: 'bad2', colour: 'blue' });
    expect(r.status).toBe(400);
    expect(problemOf(r).errors).toEqual([{ path: 'colour', message: "unknown field 'colour'" }]);
  });

  it('rejects a duplicate name and a duplicate MAC with 409 naming the field', async () => {
    const dupName = await d.api('POST', '/api/v1/machines', { name: 'm1' });
    expect(dupName.status).toBe(409);
    expect(problemOf(dupName).errors?.[0]?.path).toBe('name');
    const dupMac = await d.api('POST', '/api/v1/machines', { name: 'm2', macs: ['52:54:00:aa:00:01'] });
    expect(dupMac.status).toBe(409);
    const p = problemOf(dupMac);
    expect(p.errors?.[0]?.path).toBe('macs');
    expect(p.detail).toContain("machine '");
    expect((await d.api('GET', '/api/v1/machines?name=m2')).body).toEqual([]);
  });

  it('refuses a reference to a bootenv or profile that does not exist', async () => {
    const r = await d.api('POST', '/api/v1/machines', { name: 'm3', bootEnv: 'nope', profiles: ['ghost'] });
    expect(r.status).toBe(400);
    expect(
      problemOf(r)
        .errors?.map((e) => e.path)
        .sort(),
    ).toEqual(['bootEnv', 'profiles.0']);
  });

  it('PUT replaces, honours If-Match and answers 412 on a stale one', async () => {
    const g = await d.api('GET', '/api/v1/machines/m1');
    const etag = g.headers.get('etag')!;
    const put = await d.api(
      'PUT',
      `/api/v1/machines/${g.body.uuid}`,
      { ...g.body, description: 'rack 4' },
      { 'if-match': etag },
    );
    expect(put.status).toBe(200);
    expect(put.body.description).toBe('rack 4');
    expect(put.body.createdAt).toBe(g.body.createdAt);
    expect(put.headers.get('etag')).not.toBe(etag);
    const stale = await d.api(
      'PUT',
      `/api/v1/machines/${g.body.uuid}`,
      { ...g.body, description: 'x' },
      { 'if-match': etag },
    );
    expect(stale.status).toBe(412);
    problemOf(stale);
    const staleDel = await d.api('DELETE', `/api/v1/machines/${g.body.uuid}`, undefined, { 'if-match': etag });
    expect(staleDel.status).toBe(412);
    expect((await d.api('GET', '/api/v1/machines/m1')).body.description).toBe('rack 4');
  });

  it('PATCH takes a JSON merge patch and a JSON patch', async () => {
    const m = await d.api(
      'PATCH',
      '/api/v1/machines/m1',
      { params: { 'ntp/server': '10.0.0.1' }, description: null },
      {
        'content-type': 'application/merge-patch+json',
      },
    );
    expect(m.status).toBe(200);
    expect(m.body.params).toEqual({ 'ntp/server': '10.0.0.1' });
    expect(m.body.description).toBe(''); // removed, then defaulted
    const j = await d.api(
      'PATCH',
      '/api/v1/machines/m1',
      [
        { op: 'test', path: '/name', value: 'm1' },
        { op: 'add', path: '/macs/-', value: '52:54:00:aa:00:02' },
      ],
      { 'content-type': 'application/json-patch+json' },
    );
    expect(j.status).toBe(200);
    expect(j.body.macs).toEqual(['52:54:00:aa:00:01', '52:54:00:aa:00:02']);
    const failed = await d.api('PATCH', '/api/v1/machines/m1', [{ op: 'test', path: '/name', value: 'other' }], {
      'content-type': 'application/json-patch+json',
    });
    expect(failed.status).toBe(409);
    const invalid = await d.api(
      'PATCH',
      '/api/v1/machines/m1',
      { macs: ['zz'] },
      { 'content-type': 'application/merge-patch+json' },
    );
    expect(invalid.status).toBe(400);
    expect(problemOf(invalid).errors?.[0]?.path).toBe('macs.0');
  });

  it('a locked machine refuses changes until unlocked', async () => {
    await d.api('PATCH', '/api/v1/machines/m1', { locked: true });
    const r = await d.api('PATCH', '/api/v1/machines/m1', { description: 'x' });
    expect(r.status).toBe(409);
    const del = await d.api('DELETE', '/api/v1/machines/m1');
    expect(del.status).toBe(409);
    const unlock = await d.api('PATCH', '/api/v1/machines/m1', { locked: false });
    expect(unlock.status).toBe(200);
  });

  it('lists with filters, sort, limit, offset and a total header', async () => {
    for (let i = 0; i < 12; i++) {
      const r = await d.api('POST', '/api/v1/machines', {
        name: `list-${String(i).padStart(2, '0')}`,
        arch: i % 2 ? 'arm64' : 'amd64',
        macs: [`52:54:00:bb:00:${i.toString(16).padStart(2, '0')}`],
      });
      expect(r.status).toBe(201);
    }
    const all = await d.api('GET', '/api/v1/machines?arch=arm64&sort=-name&limit=3&offset=1');
    expect(all.status).toBe(200);
    expect(all.headers.get('x-total-count')).toBe('6');
    expect(all.body.map((m: any) => m.name)).toEqual(['list-09', 'list-07', 'list-05']);
    const byMac = await d.api('GET', '/api/v1/machines?macs=52:54:00:bb:00:0a');
    expect(byMac.body.map((m: any) => m.name)).toEqual(['list-10']);
    const locked = await d.api('GET', '/api/v1/machines?locked=false&limit=1');
    expect(Number(locked.headers.get('x-total-count'))).toBeGreaterThanOrEqual(12);
    const bad = await d.api('GET', '/api/v1/machines?colour=red');
    expect(bad.status).toBe(400);
    expect(problemOf(bad).errors?.[0]?.path).toBe('colour');
    const badLimit = await d.api('GET', '/api/v1/machines?limit=-1');
    expect(badLimit.status).toBe(400);
  });

  it('DELETE answers 204, then 404', async () => {
    const r = await d.api('DELETE', '/api/v1/machines/list-00');
    expect(r.status).toBe(204);
    const again = await d.api('DELETE', '/api/v1/machines/list-00');
    expect(again.status).toBe(404);
    problemOf(again);
  });
});

describe('auth and errors', () => {
  it('needs a bearer token on the API, but not on /info', async () => {
    const none = await fetch(`${d.url}/api/v1/machines`);
    expect(none.status).toBe(401);
    expect(none.headers.get('content-type')).toMatch(/problem\+json/);
    const wrong = await fetch(`${d.url}/api/v1/machines`, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    const info = await fetch(`${d.url}/api/v1/info`);
    expect(info.status).toBe(200);
    const body = (await info.json()) as any;
    expect(body.version).toBeTruthy();
    expect(body.listeners.http.port).toBe(d.daemon.httpPort);
  });

  it('unknown routes are 404 problem+json, without a stack', async () => {
    const r = await d.api('GET', '/api/v1/nothing-here');
    expect(r.status).toBe(404);
    expect(problemOf(r).detail).toContain('/api/v1/nothing-here');
    expect(r.text).not.toMatch(/at .*\.ts:\d+/);
  });

  it('malformed JSON is a 400 problem', async () => {
    const r = await d.api('POST', '/api/v1/machines', '{"name": ', { 'content-type': 'application/json' });
    expect(r.status).toBe(400);
    problemOf(r);
  });

  it('leases are read-only through the API', async () => {
    const r = await d.api('POST', '/api/v1/leases', { address: '10.0.0.5' });
    expect(r.status).toBe(404);
  });

  it('a lease names the daemon that wrote it: GET shows serverId, ?serverId= filters, the schema holds it', async () => {
    const base = { subnet: 'lab', state: 'bound', expiresAt: '2099-01-01T00:00:00.000Z' };
    await d.daemon.store.putBatched('leases', '10.0.9.1', {
      address: '10.0.9.1',
      mac: '52:54:00:aa:0f:01',
      ...base,
      serverId: 'rack-a',
    });
    await d.daemon.store.putBatched('leases', '10.0.9.2', { address: '10.0.9.2', mac: '52:54:00:aa:0f:02', ...base });
    const one = await d.api('GET', '/api/v1/leases/10.0.9.1');
    expect(one.status).toBe(200);
    expect(one.body.serverId).toBe('rack-a');
    expect(Lease.safeParse(one.body).success).toBe(true);
    const bad = Lease.safeParse({ ...one.body, serverId: 'two words' });
    expect(bad.error?.issues.map((i) => i.path.join('.'))).toEqual(['serverId']);
    const list = await d.api('GET', '/api/v1/leases?serverId=rack-a');
    expect(list.status).toBe(200);
    expect(list.body.map((l: { address: string }) => l.address)).toEqual(['10.0.9.1']);
    await d.daemon.store.putBatched('leases', '10.0.9.1', null);
    await d.daemon.store.putBatched('leases', '10.0.9.2', null);
  });
});

describe('subnets, reservations, bootenvs, templates', () => {
  it('validates subnet ranges with messages that say what to fix', async () => {
    const bad = await d.api('POST', '/api/v1/subnets', {
      name: 'lab',
      subnet: '10.66.0.0/24',
      activeStart: '10.66.0.200',
      activeEnd: '10.66.0.100',
    });
    expect(bad.status).toBe(400);
    expect(problemOf(bad).errors).toContainEqual({
      path: 'activeEnd',
      message: 'activeEnd 10.66.0.100 is before activeStart 10.66.0.200',
    });
    const outside = await d.api('POST', '/api/v1/subnets', {
      name: 'lab',
      subnet: '10.66.0.0/24',
      activeStart: '10.67.0.10',
      activeEnd: '10.66.0.100',
    });
    expect(problemOf(outside).errors?.[0]?.path).toBe('activeStart');
    const ok = await d.api('POST', '/api/v1/subnets', {
      name: 'lab',
      subnet: '10.66.0.0/24',
      activeStart: '10.66.0.10',
      activeEnd: '10.66.0.100',
    });
    expect(ok.status).toBe(201);
    expect(ok.body.leaseTime).toBe(3600);
    expect(ok.body.pickers).toEqual(['hint', 'nextFree', 'mostExpired']);
    const overlap = await d.api('POST', '/api/v1/subnets', {
      name: 'lab2',
      subnet: '10.66.0.0/24',
      activeStart: '10.66.0.50',
      activeEnd: '10.66.0.150',
    });
    expect(overlap.status).toBe(409);
  });

  it('reservations must sit inside an existing subnet; a used subnet cannot be deleted', async () => {
    const bad = await d.api('POST', '/api/v1/reservations', {
      address: '10.1.0.5',
      mac: '52:54:00:cc:00:01',
      subnet: 'lab',
    });
    expect(bad.status).toBe(400);
    expect(problemOf(bad).errors?.[0]?.path).toBe('address');
    const ok = await d.api('POST', '/api/v1/reservations', {
      address: '10.66.0.5',
      mac: '52:54:00:cc:00:01',
      subnet: 'lab',
    });
    expect(ok.status).toBe(201);
    const dup = await d.api('POST', '/api/v1/reservations', {
      address: '10.66.0.6',
      mac: '52:54:00:cc:00:01',
      subnet: 'lab',
    });
    expect(dup.status).toBe(409);
    const del = await d.api('DELETE', '/api/v1/subnets/lab');
    expect(del.status).toBe(409);
    expect(problemOf(del).detail).toContain('reservations');
  });

  it('bootenvs in use cannot be deleted; keys cannot be renamed', async () => {
    const be = await d.api('POST', '/api/v1/bootenvs', {
      name: 'lab',
      kernel: 'lab/vmlinuz',
      initrds: ['lab/initrd.gz'],
    });
    expect(be.status).toBe(201);
    await d.api('POST', '/api/v1/machines', { name: 'uses-lab', bootEnv: 'lab' });
    const del = await d.api('DELETE', '/api/v1/bootenvs/lab');
    expect(del.status).toBe(409);
    expect(problemOf(del).detail).toContain('uses-lab');
    const rename = await d.api('PUT', '/api/v1/bootenvs/lab', { name: 'other' });
    expect(rename.status).toBe(409);
    const badTpl = await d.api('POST', '/api/v1/bootenvs', {
      name: 'x',
      templates: [{ name: 't', path: 'a', templateId: 'missing' }],
    });
    expect(problemOf(badTpl).errors?.[0]?.path).toBe('templates.0.templateId');
    const badArtifact = await d.api('POST', '/api/v1/bootenvs', {
      name: 'y',
      artifacts: [{ path: '../etc/passwd', sha256: 'x' }],
    });
    expect(
      problemOf(badArtifact)
        .errors?.map((e) => e.path)
        .sort(),
    ).toEqual(['artifacts.0.path', 'artifacts.0.sha256']);
  });

  it('templates are CRUD-able by id', async () => {
    const t = await d.api('POST', '/api/v1/templates', { id: 'hello', contents: 'hi {{ machine.name }}' });
    expect(t.status).toBe(201);
    expect(t.headers.get('location')).toBe('/api/v1/templates/hello');
    expect((await d.api('GET', '/api/v1/templates/hello')).body.contents).toBe('hi {{ machine.name }}');
  });
});

describe('params and profiles', () => {
  it('validates values against the param schema, resolves machine > profiles > global > default, hides secure values in lists', async () => {
    expect(
      (await d.api('POST', '/api/v1/params', { name: 'console', schema: { type: 'string', default: 'ttyS0' } })).status,
    ).toBe(201);
    expect(
      (await d.api('POST', '/api/v1/params', { name: 'size', schema: { type: 'integer', minimum: 1 } })).status,
    ).toBe(201);
    expect(
      (await d.api('POST', '/api/v1/params', { name: 'password', schema: { type: 'string' }, secure: true })).status,
    ).toBe(201);
    const badSchema = await d.api('POST', '/api/v1/params', { name: 'broken', schema: { type: 'nonsense' } });
    expect(problemOf(badSchema).errors?.[0]?.path).toBe('schema');
    const badVal = await d.api('POST', '/api/v1/profiles', { name: 'p1', params: { size: 0 } });
    expect(badVal.status).toBe(400);
    expect(problemOf(badVal).errors?.[0]?.path).toBe('params.size');
    await d.api('POST', '/api/v1/profiles', { name: 'p1', params: { size: 4, zone: 'p1' } });
    await d.api('POST', '/api/v1/profiles', { name: 'p2', params: { size: 8, zone: 'p2', rack: 'r2' } });
    await d.api('PATCH', '/api/v1/profiles/global', { params: { rack: 'global', site: 'ams' } });
    const m = await d.api('POST', '/api/v1/machines', {
      name: 'pm',
      profiles: ['p1', 'p2'],
      params: { zone: 'mine', password: 's3cret' },
    });
    expect(m.status).toBe(201);
    const r = await d.api('GET', `/api/v1/machines/${m.body.uuid}/params`);
    expect(r.body).toEqual({ zone: 'mine', password: 's3cret', size: 4, rack: 'r2', site: 'ams', console: 'ttyS0' });
    const src = await d.api('GET', `/api/v1/machines/pm/params?sources=true`);
    expect(src.body.sources).toMatchObject({
      zone: 'machine',
      size: 'profile:p1',
      rack: 'profile:p2',
      site: 'profile:global',
      console: 'default',
    });
    const list = await d.api('GET', '/api/v1/machines?name=pm');
    expect(list.body[0].params.password).toBe('(secure)');
    const del = await d.api('DELETE', '/api/v1/profiles/p1');
    expect(del.status).toBe(409);
    expect((await d.api('DELETE', '/api/v1/profiles/global')).status).toBe(409);
  });

  it('prefs are one document; a pref naming a missing bootenv is refused', async () => {
    const g = await d.api('GET', '/api/v1/prefs');
    expect(g.body).toMatchObject({ defaultBootEnv: 'local', unknownBootEnv: 'discovery' });
    const bad = await d.api('PATCH', '/api/v1/prefs', { unknownBootEnv: 'nope' });
    expect(bad.status).toBe(400);
    expect(problemOf(bad).errors?.[0]?.path).toBe('unknownBootEnv');
    const ok = await d.api('PATCH', '/api/v1/prefs', { defaultBootEnv: 'discovery' });
    expect(ok.status).toBe(200);
    expect((await d.api('GET', '/api/v1/prefs')).body.defaultBootEnv).toBe('discovery');
    const inUse = await d.api('DELETE', '/api/v1/bootenvs/discovery');
    expect(inUse.status).toBe(409);
  });
});

describe('OpenAPI', () => {
  it('serves a document generated from the schemas, and a docs page', async () => {
    const r = await fetch(`${d.url}/api/v1/openapi.json`);
    expect(r.status).toBe(200);
    const doc = (await r.json()) as any;
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.components.schemas.Machine.properties)).toEqual(
      expect.arrayContaining([
        'uuid',
        'name',
        'macs',
        'address',
        'arch',
        'bootEnv',
        'profiles',
        'params',
        'locked',
        'lastSeen',
      ]),
    );
    expect(doc.paths['/api/v1/machines/{id}'].patch).toBeTruthy();
    expect(doc.paths['/api/v1/leases'].post).toBeUndefined();
    const docs = await fetch(`${d.url}/api/docs/`, { redirect: 'follow' });
    expect(docs.status).toBe(200);
    expect(await docs.text()).toMatch(/swagger/i);
  });
});
