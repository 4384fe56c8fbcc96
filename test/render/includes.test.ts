import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { includeCycle, literalIncludes } from '../../src/render/includes.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

describe('literal includes', () => {
  it('finds include, render and layout with a quoted name, also inside {% liquid %}', () => {
    const src = `a {% include 'one' %} {%- render "two", x: 1 -%} {% include var %}
{% liquid
  if x
    include 'three'
  endif
%}{% raw %}{% include 'not-run' %}{% endraw %}{% comment %}{% render 'nor-this' %}{% endcomment %}{% layout 'four' %}`;
    expect(literalIncludes(src).sort()).toEqual(['four', 'one', 'three', 'two']);
    expect(literalIncludes('{% include ')).toEqual([]);
  });

  it('finds a cycle reachable from a template, as the path that closes it', () => {
    expect(includeCycle('a', { a: "{% include 'a' %}" })).toEqual(['a', 'a']);
    expect(includeCycle('a', { a: "{% include 'b' %}", b: "{% render 'c' %}", c: "{% include 'a' %}" })).toEqual([
      'a',
      'b',
      'c',
      'a',
    ]);
    expect(includeCycle('x', { x: "{% include 'b' %}", b: "{% include 'c' %}", c: "{% include 'b' %}" })).toEqual([
      'b',
      'c',
      'b',
    ]);
    // A diamond is not a cycle; a missing template is the renderer's business.
    expect(
      includeCycle('a', {
        a: "{% include 'b' %}{% include 'c' %}",
        b: "{% include 'd' %}",
        c: "{% include 'd' %}",
        d: '',
      }),
    ).toBeUndefined();
    expect(includeCycle('a', { a: "{% include 'missing' %}" })).toBeUndefined();
  });
});

describe('saving templates that include themselves', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startTestDaemon();
  });
  afterAll(async () => {
    await d.stop();
  });

  it('refuses a self-including template with a 400 naming the cycle', async () => {
    const r = await d.api('POST', '/api/v1/templates', { id: 'loop', contents: "x{% include 'loop' %}" });
    expect(r.status).toBe(400);
    expect(r.body.errors[0]).toEqual({
      path: 'contents',
      message: "template 'loop' includes itself (loop -> loop): a render would never end; break the cycle",
    });
    expect((await d.api('GET', '/api/v1/templates/loop')).status).toBe(404);
  });

  it('refuses the template that closes a cycle through others, on create and on update', async () => {
    expect((await d.api('POST', '/api/v1/templates', { id: 'a', contents: "{% include 'b' %}" })).status).toBe(201);
    expect((await d.api('POST', '/api/v1/templates', { id: 'b', contents: 'plain' })).status).toBe(201);
    const r = await d.api('PUT', '/api/v1/templates/b', { id: 'b', contents: "{% liquid\nrender 'a'\n%}" });
    expect(r.status).toBe(400);
    expect(r.body.detail).toContain('(b -> a -> b)');
    expect((await d.api('GET', '/api/v1/templates/b')).body.contents).toBe('plain');
    // Dynamic names are not known before rendering: accepted (render limits apply).
    expect((await d.api('PUT', '/api/v1/templates/b', { id: 'b', contents: '{% include name %}' })).status).toBe(200);
  });

  it('a cycle smuggled into the store fails its renders (8 parallel GETs) while /api/v1/info keeps answering', async () => {
    const uuid = '3d6f0c1e-8a41-4f7e-9c55-5f0e2b7a9d11';
    const loop = "{% include 'deep' %}{% include 'deep' %}";
    await d.daemon.store.create('templates', 'deep', { id: 'deep', contents: loop });
    await d.daemon.store.create('bootenvs', 'deep-env', {
      name: 'deep-env',
      description: '',
      os: { name: '', family: '', version: '' },
      kernel: '',
      initrds: [],
      bootParams: '',
      templates: [{ name: 'x', path: 'x', templateId: 'deep' }],
      requiredParams: [],
      optionalParams: [],
      artifacts: [],
      onlyOnce: false,
    });
    await d.daemon.store.create('machines', uuid, {
      uuid,
      name: 'victim',
      macs: [],
      profiles: [],
      params: {},
      bootEnv: 'deep-env',
    });
    let done = false;
    let slowest = 0;
    // Each turn: an info request and a 20 ms pause; a turn that takes much longer saw the loop held (in the
    // request or in the pause: renders on the loop all ran in one stretch while the probe slept).
    const probe = (async () => {
      while (!done) {
        const t0 = performance.now();
        expect((await fetch(`${d.url}/api/v1/info`)).status).toBe(200);
        await new Promise((r) => setTimeout(r, 20));
        slowest = Math.max(slowest, performance.now() - t0 - 20);
      }
    })();
    const gets = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const r = await fetch(`${d.url}/machines/${uuid}/x`, { headers: { authorization: `Bearer ${d.token}` } });
        return { status: r.status, text: await r.text() };
      }),
    );
    done = true;
    await probe;
    for (const g of gets) {
      expect(g.status).toBe(500);
      expect(g.text).toContain('render failed');
    }
    expect(slowest).toBeLessThan(1000);
  });

  it('refuses a bootenv that uses a template caught in a cycle smuggled into the store', async () => {
    await d.daemon.store.create('templates', 'smuggled', { id: 'smuggled', contents: "{% include 'smuggled' %}" });
    const r = await d.api('POST', '/api/v1/bootenvs', {
      name: 'uses-loop',
      templates: [{ name: 'x', path: 'x', contents: "{% include 'smuggled' %}" }],
    });
    expect(r.status).toBe(400);
    expect(r.body.errors[0].path).toBe('templates.0.contents');
    expect(r.body.errors[0].message).toContain('(smuggled -> smuggled)');
    const byId = await d.api('POST', '/api/v1/bootenvs', {
      name: 'uses-loop',
      templates: [{ name: 'x', path: 'x', templateId: 'smuggled' }],
    });
    expect(byId.status).toBe(400);
    expect(byId.body.errors[0].path).toBe('templates.0.templateId');
  });
});
