// The API's resources as the CLI names them; no dependencies, so the command tree is built without loading
// the modules that run the commands.

/** The API's resources as the CLI shows them: key field, table columns, and whether they can be written. */
export type ResourceInfo = { key: string; columns: string[]; readOnly?: boolean; one: string };

export const CLI_RESOURCES: Record<string, ResourceInfo> = {
  machines: { one: 'machine', key: 'uuid', columns: ['uuid', 'name', 'macs', 'address', 'bootEnv', 'lastSeen'] },
  bootenvs: { one: 'bootenv', key: 'name', columns: ['name', 'kernel', 'initrds', 'onlyOnce', 'description'] },
  templates: { one: 'template', key: 'id', columns: ['id', 'description'] },
  subnets: {
    one: 'subnet',
    key: 'name',
    columns: ['name', 'subnet', 'activeStart', 'activeEnd', 'leaseTime', 'enabled', 'proxy'],
  },
  reservations: { one: 'reservation', key: 'address', columns: ['address', 'mac', 'subnet', 'nextServer'] },
  // serverId: the daemon that last wrote the lease (several daemons on one inventory); empty when none did.
  leases: {
    one: 'lease',
    key: 'address',
    columns: ['address', 'mac', 'subnet', 'state', 'expiresAt', 'serverId'],
    readOnly: true,
  },
  profiles: { one: 'profile', key: 'name', columns: ['name', 'params', 'description'] },
  params: { one: 'param', key: 'name', columns: ['name', 'secure', 'description'] },
};

/** `plinth machine list` works as well as `plinth machines list`. */
export function resourceOf(word: string): string | undefined {
  if (CLI_RESOURCES[word]) return word;
  return Object.keys(CLI_RESOURCES).find((k) => CLI_RESOURCES[k]!.one === word);
}

/** What the CLI calls one object of `kind` in messages: its name (or id, or address), never a generated uuid. */
export function nameOf(kind: string, obj: unknown): string {
  const o = (obj ?? {}) as Record<string, unknown>;
  const v = kind === 'machines' ? (o.name ?? o.uuid) : o[CLI_RESOURCES[kind]!.key];
  return typeof v === 'string' || typeof v === 'number' ? String(v) : '';
}

/** `'node-1' (document 2 of 3)`, or `document 2 of 3` for a document without a name. */
export function describeDoc(kind: string, doc: unknown, i: number, n: number): string {
  const name = nameOf(kind, doc);
  const where = n > 1 ? `document ${i + 1} of ${n}` : '';
  if (!name) return where || 'document';
  return where ? `'${name}' (${where})` : `'${name}'`;
}
