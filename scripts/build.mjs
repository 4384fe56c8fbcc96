#!/usr/bin/env node
// `npm run build`: src/ compiled by tsc to dist/ (tsconfig.build.json), then every file of src/ that tsc does not
// emit (worker.cjs, the store's .mjs modules, the /ui page, scripts) copied beside the compiled modules, because
// they are found relative to the module that uses them (new URL('./worker.cjs', import.meta.url)).
//
// `--out DIR` builds elsewhere (the build test); `--if-possible` (npm's `prepare`, run by `npm ci` and
// `npm install`) skips with a note, instead of failing the install, when src/ or TypeScript is not there: an
// install with --omit=dev, or a Docker stage that copies package.json before the sources.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const SRC = path.join(ROOT, 'src');
const args = process.argv.slice(2);
const outArg = args.indexOf('--out');
const OUT = path.resolve(ROOT, outArg >= 0 ? args[outArg + 1] : 'dist');
const ifPossible = args.includes('--if-possible');

let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {}
if (!existsSync(SRC) || !tsc) {
  const why = existsSync(SRC) ? 'TypeScript is not installed (npm ci --omit=dev)' : 'src/ is not there yet';
  if (ifPossible) {
    console.error(`plinth: build skipped: ${why}; run npm run build once it is`);
    process.exit(0);
  }
  console.error(`plinth: cannot build: ${why}`);
  process.exit(1);
}

rmSync(OUT, { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', OUT], {
  stdio: 'inherit',
});
if (r.status !== 0) process.exit(r.status ?? 1);

/** Every file under dir that tsc does not turn into JavaScript (sources, declarations and notes stay behind). */
function assets(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...assets(p));
    else if (!/\.(ts|md)$/.test(name)) out.push(p);
  }
  return out;
}
for (const file of assets(SRC)) cpSync(file, path.join(OUT, path.relative(SRC, file)), { preserveTimestamps: true });
