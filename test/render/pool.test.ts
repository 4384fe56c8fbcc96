import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { renderMachineFile } from '../../src/boot/render.js';
import { BootEnv } from '../../src/model/bootenv.js';
import type { Machine } from '../../src/model/machine.js';
import { configureRenderPool, RenderBusyError, RenderError, renderTemplate } from '../../src/render/engine.js';
import { RenderPool } from '../../src/render/pool.js';

afterAll(() => configureRenderPool({}));

const machine = {
  uuid: '0b4a4b3e-6c1a-4a57-9a55-8f3d5d2f8a10',
  name: 'm1',
  macs: [],
  profiles: [],
} as unknown as Machine;
const server = { address: '127.0.0.1', httpPort: 8080 };

/** Largest delay of a setImmediate probe while `work` runs (its last turn included): how long the loop was held. */
async function maxLoopHold<T>(work: Promise<T>): Promise<{ result: T; maxMs: number }> {
  let maxMs = 0;
  let done = false;
  const probe = async () => {
    while (!done) {
      const t0 = performance.now();
      await new Promise((r) => setImmediate(r));
      maxMs = Math.max(maxMs, performance.now() - t0);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const p = probe();
  const result = await work;
  done = true;
  await p;
  return { result, maxMs };
}

describe('template renders run in render processes', () => {
  it('8 parallel renders of a self-including template fail within the timeout; the event loop keeps turning', async () => {
    configureRenderPool({ timeoutMs: 1500 });
    const be = BootEnv.parse({ name: 'loop', templates: [{ name: 'x', path: 'x', templateId: 'loop' }] });
    // No text of its own: Liquid's string-memory limit never trips, only its 2 s render limit (per render, on
    // the event loop before: 8 of them held it for seconds).
    const templates = { loop: "{% include 'loop' %}{% include 'loop' %}" };
    const t0 = performance.now();
    const { result, maxMs } = await maxLoopHold(
      Promise.allSettled(
        Array.from({ length: 8 }, () =>
          renderMachineFile({ machine, bootEnv: be, params: {}, server, templates }, 'x'),
        ),
      ),
    );
    for (const r of result) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(RenderError);
    }
    // 8 renders, at least one at a time, each stopped by Liquid's limits, the heap cap or the 1.5 s timeout.
    expect(performance.now() - t0).toBeLessThan(8 * 1500 + 2000);
    expect(maxMs).toBeLessThan(200);
  });

  it("keeps the param filter's semantics (boot/render.ts passes it as data)", async () => {
    configureRenderPool({});
    const be = BootEnv.parse({
      name: 'p',
      optionalParams: ['empty'],
      bootParams: 'console={{ "console" | param }}',
      templates: [{ name: 'x', path: 'x', contents: '[{{ bootParams }}][{{ "empty" | param }}]{{ "nope" | param }}' }],
    });
    const req = { machine, bootEnv: be, params: { console: 'ttyS0' }, server, templates: {} };
    await expect(renderMachineFile(req, 'x')).rejects.toThrow(
      "bootenv p / x line 1: param 'nope' is not set for machine 'm1'",
    );
    be.templates[0]!.contents = '[{{ bootParams }}][{{ "empty" | param }}]';
    expect(await renderMachineFile(req, 'x')).toBe('[console=ttyS0][]');

    const param = { values: { console: 'ttyS0', n: 3 }, known: ['empty'], machine: 'm1' };
    expect(
      await renderTemplate({
        name: 't',
        source: '{{ "console" | param }}{{ "n" | param | plus: 1 }}',
        context: {},
        param,
      }),
    ).toBe('ttyS04');
    await expect(renderTemplate({ name: 't', source: '{{ "x" | param }}', context: {}, param })).rejects.toThrow(
      "t line 1: param 'x' is not set for machine 'm1'",
    );
  });

  it('has no file system, no process, no environment', async () => {
    configureRenderPool({});
    await expect(renderTemplate({ name: 't', source: "{% include '/etc/passwd' %}", context: {} })).rejects.toThrow(
      "included template '/etc/passwd' does not exist",
    );
    const out = await renderTemplate({
      name: 't',
      source: '[{{ process.env.HOME }}][{{ constructor }}][{{ a.constructor.name }}]',
      context: { a: {} },
    });
    expect(out).toBe('[][][]');
    await expect(renderTemplate({ name: 't', source: '{% if %}', context: {} })).rejects.toBeInstanceOf(RenderError);
  });

  it("a render's time runs from when its worker is loaded, not from the worker's start", async () => {
    // 50 ms (the least the pool takes): less than node and liquidjs take to load, so a clock started at the spawn
    // stopped every first render on a new process.
    const pool = new RenderPool({ size: 1, timeoutMs: 50 });
    try {
      expect(await pool.run({ name: 't', source: '{{ 1 | plus: 1 }}', context: {} })).toEqual({ ok: true, text: '2' });
      expect(pool.replaced).toBe(0);
    } finally {
      await pool.close();
    }
  });

  it('terminates and replaces a worker that runs past the timeout; later renders work', async () => {
    const pool = new RenderPool({ size: 1, timeoutMs: 300 });
    try {
      // Within Liquid's own limits for 2 s (9 million empty iterations): only the pool's timeout stops it sooner.
      const slow = '{% for i in (1..3000) %}{% for j in (1..3000) %}{% endfor %}{% endfor %}';
      const r = await pool.run({ name: 't', source: slow, context: {} });
      expect(r).toMatchObject({ ok: false, message: 'took longer than 300 ms: stopped' });
      expect(pool.replaced).toBe(1);
      expect(await pool.run({ name: 't', source: '{{ 1 | plus: 1 }}', context: {} })).toEqual({ ok: true, text: '2' });
    } finally {
      await pool.close();
    }
  });

  it('refuses renders beyond the queue bound (RenderBusyError: a 503, not a broken template)', async () => {
    configureRenderPool({ size: 1, queue: 1, timeoutMs: 300 });
    const slow = {
      name: 't',
      source: '{% for i in (1..3000) %}{% for j in (1..3000) %}{% endfor %}{% endfor %}',
      context: {},
    };
    const runs = [renderTemplate(slow), renderTemplate(slow), renderTemplate(slow)].map((p) =>
      p.then(
        () => 'ok',
        (e) => e,
      ),
    );
    const [a, b, c] = await Promise.all(runs);
    expect(a).toBeInstanceOf(RenderError);
    expect(b).toBeInstanceOf(RenderError);
    expect(b).not.toBeInstanceOf(RenderBusyError);
    expect(c).toBeInstanceOf(RenderBusyError);
    expect((c as Error).message).toContain('too many renders waiting');
  });

  it('a render that exceeds its heap ends only its own process, which is replaced; the render fails', async () => {
    const pool = new RenderPool({ size: 1, timeoutMs: 10_000, maxOldGenerationSizeMb: 16 });
    try {
      // Liquid's own memory limit counts strings, not arrays. Each doubling of `a` by concat allocates one array
      // twice the last: the last one overshoots a worker thread's heap cap by more than V8's 16 MB of slack, and
      // in a thread this aborted the whole process (FATAL ERROR: Reached heap limit), daemon and test alike.
      const doubling =
        '{% assign a = "x" | split: "," %}{% for i in (1..24) %}{% assign a = a | concat: a %}{% endfor %}';
      // Arrays of 4 and 8 million elements (32 and 64 MB at once) from a string within Liquid's 32 MiB limit: in a
      // thread with a 16 MiB cap this aborted the process every time.
      const split =
        '{% assign s = "0123456789012345678901234567890," %}{% for i in (1..17) %}{% assign s = s | append: s %}{% endfor %}' +
        '{% assign a = s | split: "" %}{% assign b = a | concat: a %}{{ b.size }}';
      for (const [n, hog] of [split, doubling, split].entries()) {
        const r = await pool.run({ name: 't', source: hog, context: {} });
        expect(r).toEqual({ ok: false, message: 'needed more than 16 MiB: stopped' });
        expect(pool.replaced).toBe(n + 1);
        expect(await pool.run({ name: 't', source: 'ok', context: {} })).toEqual({ ok: true, text: 'ok' });
      }
    } finally {
      await pool.close();
    }
  });

  it('renders in processes with an empty environment, which end with the pool', async () => {
    process.env.PLINTH_TEST_SECRET = 'not-for-templates';
    const pool = new RenderPool({ size: 2, timeoutMs: 2000 });
    let pids: number[] = [];
    try {
      const [a, b] = await Promise.all([
        pool.run({ name: 't', source: '{{ 1 | plus: 1 }}', context: {} }),
        pool.run({ name: 't', source: '{{ x.y }}', context: { x: { y: new Date(0).toISOString() } } }),
      ]);
      expect(a).toEqual({ ok: true, text: '2' });
      expect(b).toEqual({ ok: true, text: '1970-01-01T00:00:00.000Z' });
      pids = pool.pids();
      expect(pids).toHaveLength(2);
      for (const pid of pids) {
        expect(pid).not.toBe(process.pid);
        // None of the daemon's environment, no NODE_OPTIONS: only the IPC channel's and the shell's PWD, in /.
        const env = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').filter(Boolean);
        expect(env.filter((e) => !e.startsWith('NODE_CHANNEL_'))).toEqual(['PWD=/']);
        // None of the daemon's capabilities (as root: all of them; under systemd: CAP_NET_RAW, ...).
        const status = readFileSync(`/proc/${pid}/status`, 'utf8');
        for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) {
          expect(status).toMatch(new RegExp(`^${set}:\\s+0+$`, 'm'));
        }
        if (process.getuid?.() === 0) expect(status).toMatch(/^CapBnd:\s+0+$/m);
        expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
      }
    } finally {
      delete process.env.PLINTH_TEST_SECRET;
      await pool.close();
    }
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
    expect(await pool.run({ name: 't', source: 'x', context: {} })).toEqual({
      ok: false,
      message: 'the render pool is closed',
    });
  });

  it("close() settles in a program with nothing else to wait for (an idle render process is not the loop's)", () => {
    // Top-level awaits in a process of its own: Node ends it with exit code 13 if close()'s promise is left
    // pending because nothing keeps the loop alive while the killed processes exit.
    const pool = fileURLToPath(new URL('../../src/render/pool.ts', import.meta.url));
    const program = [
      `const { RenderPool } = await import(${JSON.stringify(pool)});`,
      'const pool = new RenderPool({ size: 2 });',
      "const a = await pool.run({ name: 't', source: '{{ 1 | plus: 1 }}', context: {} });",
      'await pool.close();',
      'console.log(JSON.stringify({ a, pids: pool.pids() }));',
    ].join('\n');
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', program], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(JSON.parse(out)).toEqual({ a: { ok: true, text: '2' }, pids: [] });
  });
});
