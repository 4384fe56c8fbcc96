import YAML from 'yaml';

/**
 * Structural validation of a Talos machine config before Plinth serves it at `talos.config=`. Talos fetches it once
 * in maintenance mode and, when it cannot parse it, waits there forever: a render that is not a config becomes a
 * render error in the timeline instead. The config is YAML, one or more documents (Talos 1.5+ adds documents
 * beside the v1alpha1 one, each with `apiVersion` and `kind`); the v1alpha1 document has `version: v1alpha1`,
 * a `machine` section whose `type` is init, controlplane or worker, and usually a `cluster` section.
 */
const MACHINE_TYPES = ['init', 'controlplane', 'worker'];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function validateTalos(text: string): string[] {
  const docs = YAML.parseAllDocuments(text, { uniqueKeys: true, prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [docs];
  const problems: string[] = [];
  let v1alpha1 = 0;
  list.forEach((d, i) => {
    const where = list.length > 1 ? `talos config document ${i + 1}` : 'talos config';
    if (d.errors.length) {
      problems.push(`${where}: not YAML: ${d.errors[0]!.message.split('\n')[0]}`);
      return;
    }
    const doc = d.toJS() as unknown;
    if (doc === null && list.length > 1) return;
    if (!isObj(doc)) {
      problems.push(`${where}: a YAML mapping`);
      return;
    }
    if (doc.version !== undefined) {
      if (doc.version !== 'v1alpha1') {
        problems.push(`${where}: version: "v1alpha1"`);
        return;
      }
      v1alpha1++;
      const m = doc.machine;
      if (!isObj(m)) {
        problems.push(`${where}: machine: a mapping (the machine section)`);
        return;
      }
      if (!MACHINE_TYPES.includes(String(m.type)))
        problems.push(`${where}: machine.type: one of ${MACHINE_TYPES.join(', ')}`);
      if (doc.cluster !== undefined && !isObj(doc.cluster)) problems.push(`${where}: cluster: a mapping`);
    } else if (typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string') {
      problems.push(`${where}: a v1alpha1 config (version:) or a document with apiVersion and kind`);
    }
  });
  if (!problems.length && v1alpha1 !== 1)
    problems.push(`talos config: exactly one v1alpha1 document (version: v1alpha1), found ${v1alpha1}`);
  return problems;
}
