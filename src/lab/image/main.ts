/**
 * `npm run image:build -- [--flavor F] [--cache-root DIR] [--register URL --token T [--name debian-live]]`:
 * builds Plinth's immutable Debian image (cached by its inputs), prints where it is, its size and build time,
 * and with --register uploads its files to a running Plinth and creates (or replaces) the bootenv that pins them.
 */
import { createReadStream, statSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { buildImage, imageBootenv, imagePrefix } from './image.js';

async function register(base: string, token: string, name: string, dir: string, bootenv: Record<string, unknown>) {
  const auth = { authorization: `Bearer ${token}` };
  for (const a of bootenv.artifacts as { path: string }[]) {
    const file = path.join(dir, path.posix.basename(a.path));
    const init = {
      method: 'PUT',
      headers: { ...auth, 'content-length': String(statSync(file).size) },
      body: Readable.toWeb(createReadStream(file)),
      duplex: 'half',
    };
    const r = await fetch(`${base}/api/v1/files/${a.path}`, init as unknown as RequestInit);
    if (!r.ok) throw new Error(`upload ${a.path}: ${r.status} ${await r.text()}`);
  }
  const r = await fetch(`${base}/api/v1/bootenvs/${name}`, {
    method: 'PUT',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify(bootenv),
  });
  if (!r.ok) throw new Error(`bootenv ${name}: ${r.status} ${await r.text()}`);
}

async function main(): Promise<number> {
  const { values: v } = parseArgs({
    options: {
      flavor: { type: 'string' },
      'cache-root': { type: 'string' },
      register: { type: 'string' },
      token: { type: 'string', default: process.env.PLINTH_TOKEN },
      name: { type: 'string', default: 'debian-live' },
    },
    strict: true,
  });
  const started = Date.now();
  const { dir, manifest } = buildImage({ flavor: v.flavor, cacheRoot: v['cache-root'] });
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  for (const a of manifest.artifacts) process.stdout.write(`${a.sha256}  ${a.name}  ${mib(a.size)}\n`);
  process.stdout.write(
    `image ${dir}\nbuilt in ${manifest.buildSeconds} s (this run: ${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
  );
  if (v.register) {
    if (!v.token) throw new Error('--register needs --token (or PLINTH_TOKEN)');
    await register(v.register.replace(/\/$/, ''), v.token, v.name!, dir, imageBootenv(manifest, v.name!));
    process.stdout.write(`bootenv ${v.name}: files under ${imagePrefix(manifest)}/, every digest pinned\n`);
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`image:build: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
