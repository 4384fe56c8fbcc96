/**
 * Structural validation of an Ignition 3.x config before Plinth serves it. Ignition runs once, in the initramfs,
 * and a config it cannot use leaves a machine that boots without its users, files and units (or halts in the
 * emergency shell): a render that is not a usable config is refused here and becomes a render error in the
 * timeline instead. What is checked is the part of the spec (coreos/ignition docs, configuration-v3_x) that a
 * template can get wrong: JSON, `ignition.version` a 3.x release this machine's Ignition can know, only the
 * top-level keys of that version (Ignition merely warns about an unknown key, so a typo such as `sytemd` would
 * silently drop every unit: Plinth refuses it), absolute and unique paths in storage, systemd unit names with a
 * unit suffix and unique, users with names, and source URLs Ignition can fetch.
 */

/** Spec versions Ignition understands (3.4.0 is experimental in Debian's ignition 2.14, stable from 2.15). */
const VERSIONS = ['3.0.0', '3.1.0', '3.2.0', '3.3.0', '3.4.0', '3.4.0-experimental', '3.5.0'];
const TOP_KEYS: Record<string, string> = {
  ignition: '3.0.0',
  storage: '3.0.0',
  systemd: '3.0.0',
  passwd: '3.0.0',
  kernelArguments: '3.3.0',
};
const IGNITION_KEYS = ['version', 'config', 'timeouts', 'security', 'proxy'];
const STORAGE_KEYS: Record<string, string> = {
  disks: '3.0.0',
  raid: '3.0.0',
  filesystems: '3.0.0',
  files: '3.0.0',
  directories: '3.0.0',
  links: '3.0.0',
  luks: '3.2.0',
};
const UNIT_SUFFIX = /\.(service|socket|device|mount|automount|swap|target|path|timer|slice|scope)$/;
const SOURCE_SCHEME = /^(data|https?|tftp|s3|gs|arn):/;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const older = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true }) < 0;

/** Problems with `text` as an Ignition 3.x config; empty when it is one. Each names its JSON path. */
export function validateIgnition(text: string): string[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return [`not JSON: ${(err as Error).message}`];
  }
  if (!isObj(doc)) return ['$: an Ignition config is a JSON object'];
  const problems: string[] = [];
  const ign = doc.ignition;
  const version = isObj(ign) ? ign.version : undefined;
  if (typeof version !== 'string') return ['$.ignition.version: missing (a string such as "3.3.0")'];
  if (!VERSIONS.includes(version))
    return [`$.ignition.version: "${version}" is not an Ignition 3.x spec version (${VERSIONS.join(', ')})`];
  const base = version.replace(/-experimental$/, '');

  for (const k of Object.keys(doc)) {
    const since = TOP_KEYS[k];
    if (!since) problems.push(`$.${k}: not a key of Ignition ${version} (one of ${Object.keys(TOP_KEYS).join(', ')})`);
    else if (older(base, since))
      problems.push(`$.${k}: needs Ignition spec ${since} or later, the config is ${version}`);
  }
  for (const k of Object.keys(ign as Obj))
    if (!IGNITION_KEYS.includes(k)) problems.push(`$.ignition.${k}: not a key of the ignition section`);
  checkConfigRefs(ign as Obj, problems);
  if (doc.storage !== undefined) checkStorage(doc.storage, base, problems);
  if (doc.systemd !== undefined) checkSystemd(doc.systemd, problems);
  if (doc.passwd !== undefined) checkPasswd(doc.passwd, problems);
  return problems;
}

function checkSource(src: unknown, where: string, problems: string[]) {
  if (src === null || src === undefined) return;
  if (typeof src !== 'string') problems.push(`${where}: a URL string or null`);
  else if (src !== '' && !SOURCE_SCHEME.test(src))
    problems.push(`${where}: "${src.slice(0, 80)}" is not a data, http(s), tftp, s3, gs or arn URL`);
}

function checkConfigRefs(ign: Obj, problems: string[]) {
  const cfg = ign.config;
  if (cfg === undefined) return;
  if (!isObj(cfg)) {
    problems.push('$.ignition.config: an object');
    return;
  }
  const merge = cfg.merge ?? [];
  if (!Array.isArray(merge)) problems.push('$.ignition.config.merge: a list');
  else
    merge.forEach((r, i) => {
      checkSource(isObj(r) ? r.source : r, `$.ignition.config.merge[${i}].source`, problems);
    });
  if (cfg.replace !== undefined)
    checkSource(isObj(cfg.replace) ? cfg.replace.source : cfg.replace, '$.ignition.config.replace.source', problems);
}

/** A list at `doc[key]` (absent: empty), or a problem. */
function list(doc: Obj, key: string, where: string, problems: string[]): unknown[] {
  const v = doc[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    problems.push(`${where}.${key}: a list`);
    return [];
  }
  return v;
}

function checkStorage(storage: unknown, version: string, problems: string[]) {
  if (!isObj(storage)) {
    problems.push('$.storage: an object');
    return;
  }
  for (const k of Object.keys(storage)) {
    const since = STORAGE_KEYS[k];
    if (!since) problems.push(`$.storage.${k}: not a key of the storage section`);
    else if (older(version, since)) problems.push(`$.storage.${k}: needs Ignition spec ${since} or later`);
  }
  // Ignition refuses a config that names one path twice across files, directories and links.
  const seen = new Map<string, string>();
  for (const key of ['files', 'directories', 'links']) {
    list(storage, key, '$.storage', problems).forEach((e, i) => {
      const where = `$.storage.${key}[${i}]`;
      if (!isObj(e)) {
        problems.push(`${where}: an object`);
        return;
      }
      const p = e.path;
      if (typeof p !== 'string' || !p.startsWith('/')) problems.push(`${where}.path: an absolute path`);
      else if (seen.has(p)) problems.push(`${where}.path: "${p}" is already defined at ${seen.get(p)}`);
      else seen.set(p, where);
      if (e.mode !== undefined && e.mode !== null && (!Number.isInteger(e.mode) || (e.mode as number) < 0))
        problems.push(`${where}.mode: an integer (decimal, e.g. 420 for 0644)`);
      if (key === 'files') {
        if (e.contents !== undefined && e.contents !== null && !isObj(e.contents))
          problems.push(`${where}.contents: an object`);
        if (isObj(e.contents)) checkSource(e.contents.source, `${where}.contents.source`, problems);
        list(e, 'append', where, problems).forEach((a, j) => {
          checkSource(isObj(a) ? a.source : a, `${where}.append[${j}].source`, problems);
        });
      }
      if (key === 'links' && typeof e.target !== 'string') problems.push(`${where}.target: a path`);
    });
  }
  list(storage, 'filesystems', '$.storage', problems).forEach((f, i) => {
    if (!isObj(f) || typeof f.device !== 'string' || !f.device.startsWith('/'))
      problems.push(`$.storage.filesystems[${i}].device: an absolute device path`);
  });
}

function checkSystemd(systemd: unknown, problems: string[]) {
  if (!isObj(systemd)) {
    problems.push('$.systemd: an object');
    return;
  }
  for (const k of Object.keys(systemd)) if (k !== 'units') problems.push(`$.systemd.${k}: not a key of systemd`);
  const names = new Set<string>();
  list(systemd, 'units', '$.systemd', problems).forEach((u, i) => {
    const where = `$.systemd.units[${i}]`;
    if (!isObj(u)) {
      problems.push(`${where}: an object`);
      return;
    }
    const n = u.name;
    if (typeof n !== 'string' || n.includes('/') || !UNIT_SUFFIX.test(n))
      problems.push(`${where}.name: a unit name with a unit type suffix (e.g. plinth-booted.service)`);
    else if (names.has(n)) problems.push(`${where}.name: "${n}" is defined twice`);
    else names.add(n);
    if (u.enabled !== undefined && u.enabled !== null && typeof u.enabled !== 'boolean')
      problems.push(`${where}.enabled: true or false`);
    if (u.contents !== undefined && u.contents !== null && typeof u.contents !== 'string')
      problems.push(`${where}.contents: a string`);
    list(u, 'dropins', where, problems).forEach((d, j) => {
      if (!isObj(d) || typeof d.name !== 'string' || !d.name.endsWith('.conf') || d.name.includes('/'))
        problems.push(`${where}.dropins[${j}].name: a file name ending in .conf`);
    });
  });
}

function checkPasswd(passwd: unknown, problems: string[]) {
  if (!isObj(passwd)) {
    problems.push('$.passwd: an object');
    return;
  }
  for (const k of Object.keys(passwd))
    if (k !== 'users' && k !== 'groups') problems.push(`$.passwd.${k}: not a key of passwd`);
  for (const key of ['users', 'groups']) {
    list(passwd, key, '$.passwd', problems).forEach((u, i) => {
      const where = `$.passwd.${key}[${i}]`;
      if (!isObj(u) || typeof u.name !== 'string' || u.name === '') {
        problems.push(`${where}.name: required`);
        return;
      }
      const keys = u.sshAuthorizedKeys;
      if (keys !== undefined && keys !== null && (!Array.isArray(keys) || keys.some((k) => typeof k !== 'string')))
        problems.push(`${where}.sshAuthorizedKeys: a list of strings`);
    });
  }
}
