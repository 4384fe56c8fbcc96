import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { BLKSIZE_PARAM, BLKSIZE_PARAM_DEF } from './boot/caps.js';
import type { Bus } from './events.js';
import { createDoc } from './inventory/crud.js';
import { GLOBAL_PROFILE } from './inventory/params.js';
import { inventoryResource, PREFS_KEY } from './inventory/resources.js';
import type { Logger } from './log.js';
import { Prefs } from './model/profile.js';
import { ConflictError, type Store } from './store/store.js';

/**
 * What a fresh store needs to work at once: the global profile, default prefs, the params Plinth itself reads
 * (`tftp/max-blksize`, so values set anywhere are checked), and the bootenvs shipped in bootenvs/*.yaml.
 * Shipped bootenvs are only created when missing, so an operator's edits survive restarts. Daemons sharing one
 * PostgreSQL inventory may seed it at the same moment: a document another one created meanwhile is no error.
 */
export async function seedStore(store: Store, bus: Bus, log: Logger, bootenvsDir: string): Promise<void> {
  const inv = { store, bus };
  if (!(await store.get('profiles', GLOBAL_PROFILE))) {
    await createDoc(inv, inventoryResource('profiles'), {
      name: GLOBAL_PROFILE,
      description: 'Params every machine inherits, after its own profiles',
    }).catch(seededElsewhere);
  }
  if (!(await store.get('params', BLKSIZE_PARAM))) {
    await createDoc(inv, inventoryResource('params'), BLKSIZE_PARAM_DEF).catch(seededElsewhere);
  }
  const bootenvs = inventoryResource('bootenvs');
  const names = await readdir(bootenvsDir).catch(() => [] as string[]);
  for (const f of names.filter((n) => /\.ya?ml$/.test(n)).sort()) {
    const file = path.join(bootenvsDir, f);
    let doc: unknown;
    try {
      doc = YAML.parse(await readFile(file, 'utf8'));
    } catch (err) {
      log.error({ file, err: (err as Error).message }, 'shipped bootenv is not valid YAML: skipped');
      continue;
    }
    const name = (doc as { name?: string })?.name;
    if (typeof name !== 'string' || (await store.get('bootenvs', name))) continue;
    try {
      await createDoc(inv, bootenvs, doc);
      log.info({ bootenv: name, file }, 'shipped bootenv loaded');
    } catch (err) {
      if (err instanceof ConflictError) continue;
      const e = err as Error & { errors?: unknown };
      log.error({ file, err: e.message, errors: e.errors }, 'shipped bootenv is not valid: skipped');
    }
  }
  if (!(await store.get('prefs', PREFS_KEY))) {
    const prefs = Prefs.parse({});
    await store.create('prefs', PREFS_KEY, prefs).catch(seededElsewhere);
  }
}

function seededElsewhere(err: unknown): void {
  if (!(err instanceof ConflictError)) throw err;
}
