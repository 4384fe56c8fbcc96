// The daemon's node flags (src/node-flags.ts) are the ones every documented way of starting it passes, and the
// start-up check names the ones a process lacks.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DAEMON_NODE_FLAGS, missingNodeFlags } from '../src/node-flags.js';

const root = new URL('../', import.meta.url);
const read = (f: string) => readFileSync(new URL(f, root), 'utf8');

/** The words between `node` and the script of a command line. */
function nodeFlags(cmd: string[]): string[] {
  const at = cmd.findIndex((w) => w === 'node' || w.endsWith('/node'));
  const script = cmd.findIndex((w, i) => i > at && !w.startsWith('-') && cmd[i - 1] !== '--import');
  return cmd.slice(at + 1, script).filter((w) => w !== '--import' && !/tsx$/.test(w));
}

describe('the daemon node flags', () => {
  const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
  const launches: [string, string[]][] = [
    ['npm start', pkg.scripts.start!.split(' ')],
    ['npm run dev', pkg.scripts.dev!.split(' ')],
    ['contrib/plinth.service', /^ExecStart=(.*)$/m.exec(read('contrib/plinth.service'))![1]!.split(' ')],
    ['Dockerfile', JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(read('Dockerfile'))![1]!) as string[]],
  ];
  it.each(launches)('%s passes every one of them', (_name, cmd) => {
    for (const f of DAEMON_NODE_FLAGS) expect(nodeFlags(cmd)).toContain(f);
  });

  it('the start-up check names what is missing, by name, from execArgv and NODE_OPTIONS', () => {
    expect(missingNodeFlags([])).toEqual([...DAEMON_NODE_FLAGS]);
    expect(missingNodeFlags(['--enable-source-maps', ...DAEMON_NODE_FLAGS])).toEqual([]);
    // Another value is the operator's choice; underscores are V8's other spelling.
    expect(missingNodeFlags(['--max-semi-space-size=8'])).toEqual(['--heap-growing-percent=400']);
    expect(missingNodeFlags(['--max-semi-space-size=8', '--heap-growing-percent=100'])).toEqual([]);
    expect(missingNodeFlags([], '--max_semi_space_size=4 --heap_growing_percent=200 --enable-source-maps')).toEqual([]);
  });

  it('this node takes every one of them (a flag V8 does not know stops node before the daemon starts)', () => {
    const r = spawnSync(process.execPath, [...DAEMON_NODE_FLAGS, '-e', 'process.stdout.write("ok")'], {
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('ok');
  });

  it('node takes the flag at start (the young generation is that small)', () => {
    // What the flag is for, checked on this node: V8 sizes the new space once, from the command line.
    const probe = `const s = require('v8').getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');
      let keep = []; for (let i = 0; i < 2e6; i++) { const o = { i, s: 'x' + i }; if (i % 97 === 0) keep.push(o); }
      const t = require('v8').getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');
      process.stdout.write(String(t.space_size));`;
    const size = (flags: string[]) =>
      Number(spawnSync(process.execPath, [...flags, '-e', probe], { encoding: 'utf8' }).stdout);
    const small = size([...DAEMON_NODE_FLAGS]);
    expect(small).toBeGreaterThan(0);
    expect(small).toBeLessThanOrEqual(4 << 20);
    expect(size([])).toBeGreaterThan(small);
  });
});
