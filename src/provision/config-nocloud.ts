import YAML from 'yaml';

/**
 * Structural validation of cloud-init NoCloud seed files before Plinth serves them (cloud-init 22.4, the version in
 * Debian 12: docs "Datasources / NoCloud", "Network configuration"). cloud-init reads `user-data`, `meta-data` (and
 * `vendor-data`) from the seed URL given as `ds=nocloud-net;s=<url>/` on the kernel command line; a YAML error in
 * user-data makes cloud-init skip every module of the config and boot an unconfigured machine, which is exactly
 * the broken boot the timeline should show as a render error instead.
 */

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** One YAML document as a mapping, or the problem (duplicate keys are an error, as in cloud-init's loader). */
export function yamlMapping(text: string, what: string): { doc?: Obj; problem?: string } {
  const parsed = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (parsed.errors.length) return { problem: `${what}: not YAML: ${parsed.errors[0]!.message.split('\n')[0]}` };
  const doc = parsed.toJS() as unknown;
  if (doc === null || doc === undefined) return { doc: {} };
  if (!isObj(doc)) return { problem: `${what}: a YAML mapping at the top level` };
  return { doc };
}

/** A host name cloud-init can set (RFC 1123 labels): a machine name with _ : @ + is not one. */
const HOST = /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/;
const strings = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** `#cloud-config` user-data: the header line, a YAML mapping, and the shape of the keys Plinth's templates use. */
export function validateCloudConfig(text: string): string[] {
  if (!/^#cloud-config[ \t]*\r?\n/.test(text))
    return ['user-data: the first line must be "#cloud-config" (cloud-init ignores the part otherwise)'];
  const { doc, problem } = yamlMapping(text, 'user-data');
  if (problem || !doc) return [problem!];
  const problems: string[] = [];
  for (const k of ['hostname', 'fqdn'])
    if (doc[k] !== undefined && !(typeof doc[k] === 'string' && HOST.test(doc[k] as string)))
      problems.push(`user-data: ${k}: a host name (letters, digits, dots, hyphens)`);
  if (doc.ssh_authorized_keys !== undefined && !strings(doc.ssh_authorized_keys))
    problems.push('user-data: ssh_authorized_keys: a list of strings');
  for (const k of ['runcmd', 'bootcmd', 'packages', 'users'])
    if (doc[k] !== undefined && doc[k] !== null && !Array.isArray(doc[k])) problems.push(`user-data: ${k}: a list`);
  if (Array.isArray(doc.users))
    doc.users.forEach((u, i) => {
      if (u !== 'default' && !(isObj(u) && typeof u.name === 'string' && u.name))
        problems.push(`user-data: users[${i}]: "default" or a mapping with a name`);
    });
  if (doc.write_files !== undefined) {
    if (!Array.isArray(doc.write_files)) problems.push('user-data: write_files: a list');
    else
      doc.write_files.forEach((f, i) => {
        if (!isObj(f) || typeof f.path !== 'string' || !f.path.startsWith('/'))
          problems.push(`user-data: write_files[${i}].path: an absolute path`);
      });
  }
  return problems;
}

/** `meta-data`: a mapping with an `instance-id` (cloud-init runs its once-per-instance modules when it changes). */
export function validateMetaData(text: string): string[] {
  const { doc, problem } = yamlMapping(text, 'meta-data');
  if (problem || !doc) return [problem!];
  const problems: string[] = [];
  const id = doc['instance-id'];
  // cloud-init reads an unquoted number as its text: 1111 is the instance id "1111".
  if (!((typeof id === 'string' && id !== '') || typeof id === 'number'))
    problems.push('meta-data: instance-id: a non-empty string');
  const host = doc['local-hostname'];
  if (host !== undefined && (typeof host !== 'string' || !HOST.test(host)))
    problems.push('meta-data: local-hostname: a host name (letters, digits, dots, hyphens)');
  return problems;
}

/** `network-config`: version 1 (a `config` list) or version 2 (netplan's keys), optionally under `network:`. */
export function validateNetworkConfig(text: string): string[] {
  const { doc, problem } = yamlMapping(text, 'network-config');
  if (problem || !doc) return [problem!];
  const net = isObj(doc.network) ? doc.network : doc;
  if (net.version === 1) {
    if (!Array.isArray(net.config)) return ['network-config: version 1 needs a config list'];
    const bad = net.config.findIndex((c) => !isObj(c) || typeof c.type !== 'string');
    return bad >= 0 ? [`network-config: config[${bad}]: a mapping with a type`] : [];
  }
  if (net.version === 2) {
    const known = ['version', 'renderer', 'ethernets', 'bonds', 'bridges', 'vlans', 'wifis'];
    return Object.keys(net)
      .filter((k) => !known.includes(k))
      .map((k) => `network-config: ${k}: not a key of network config version 2`);
  }
  return ['network-config: version: 1 or 2'];
}
