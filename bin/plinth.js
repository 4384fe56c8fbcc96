#!/usr/bin/env node
// The `plinth` command: runs the compiled program (dist/main.js, built by `npm run build`, which `npm ci` runs
// through the `prepare` script). Plain node, no TypeScript loader: that is what makes a CLI call start in
// milliseconds instead of compiling the sources at every start. In a checkout with no build and the development
// dependencies installed it runs the sources through tsx instead; `npm run dev` does that on purpose.
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/main.js', import.meta.url);
// Started with tsx already loaded (`node --import tsx bin/plinth.js`, as the tests do): the sources, never a
// dist/ that may be older than them.
const underTsx = process.execArgv.some((a) => /(^|[/\\])tsx([/\\]|$)/.test(a));
if (underTsx) await import('../src/main.ts');
else if (existsSync(compiled)) await import(compiled.href);
else {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    process.stderr.write('plinth: dist/ is missing: build it with `npm run build` (npm ci does it)\n');
    process.exit(1);
  }
  register();
  await import('../src/main.ts');
}
