/**
 * The CLI's progress bar: byte sizes with a rate by default, plain counts with `unit: 'count'` (a rollout's
 * machines, which `plinth rollout status --watch` draws), nothing at all when stderr is not a terminal.
 */
import { describe, expect, it } from 'vitest';
import type { CliContext } from '../../src/cli/context.js';
import type { Io } from '../../src/cli/output.js';
import { progress } from '../../src/cli/progress.js';
import { rolloutStatus } from '../../src/cli/rollout.js';

function ttyIo(errTTY = true) {
  const err: string[] = [];
  const out: string[] = [];
  const io: Io = { out: (s) => void out.push(s), err: (s) => void err.push(s), outTTY: false, errTTY };
  return { io, err: () => err.join(''), out: () => out.join('') };
}

// The last frame cli-progress drew (frames are separated by carriage returns and escape sequences).
const lastFrame = (s: string) =>
  s
    .replace(/\u001b(\[[0-9;?]*[A-Za-z]|[78])/g, '\r')
    .split(/[\r\n]/)
    .filter((l) => l.trim())
    .at(-1) ?? '';

describe('progress', () => {
  it('counts plain numbers with unit count: no byte unit, no rate', () => {
    const t = ttyIo();
    const bar = progress(t.io, 'rollout r1 machines', 3, { unit: 'count' });
    bar.add(1);
    bar.add(1);
    bar.done();
    const frame = lastFrame(t.err());
    expect(frame).toMatch(/^rollout r1 machines \[#{16}\.{8}\]\s+66% 2 \/ 3$/);
    expect(t.err()).not.toMatch(/\d B\b|\/s/);
  });

  it('counts without a total', () => {
    const t = ttyIo();
    const bar = progress(t.io, 'seen', undefined, { unit: 'count' });
    bar.add(5);
    bar.done();
    expect(lastFrame(t.err())).toBe('seen 5');
  });

  it('shows byte sizes and a rate by default', () => {
    const t = ttyIo();
    const bar = progress(t.io, 'upload', 3 * 1024 * 1024);
    bar.add(1024 * 1024);
    bar.done();
    expect(lastFrame(t.err())).toMatch(/^upload \[#{8}\.{16}\]\s+33% 1(\.0)? MiB \/ 3(\.0)? MiB\s+\S+ \S*B\/s$/);
  });

  it('draws nothing when stderr is not a terminal', () => {
    const t = ttyIo(false);
    const bar = progress(t.io, 'x', 2, { unit: 'count' });
    bar.add(2);
    bar.done();
    expect(t.err()).toBe('');
  });

  it('rollout status --watch counts machines, not bytes', async () => {
    const t = ttyIo();
    const m = (result?: string) => ({ name: 'n', batch: 0, ...(result ? { result } : {}) });
    const states = [
      { state: 'running', machines: [m(), m()] },
      { state: 'running', machines: [m('ok'), m()] },
      { state: 'done', machines: [m('ok'), m('ok')] },
    ];
    let calls = 0;
    const client = {
      request: async () => ({
        body: { id: 'r1', batch: 0, batches: 2, spec: { bootEnv: 'be' }, ...states[Math.min(calls++, 2)] },
      }),
    };
    const ctx = { io: t.io, mode: 'json', client, env: {}, cwd: '/', signal: new AbortController().signal };
    expect(await rolloutStatus('r1', { watch: true }, ctx as unknown as CliContext)).toBeUndefined();
    expect(calls).toBe(3);
    expect(lastFrame(t.err())).toMatch(/^rollout r1 machines \[#{24}\] 100% 2 \/ 2$/);
    expect(t.err()).not.toMatch(/\d B\b/);
    expect(JSON.parse(t.out()).state).toBe('done');
  }, 20_000);
});
