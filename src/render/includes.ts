import { type TagToken, Tokenizer } from 'liquidjs';

/** Tags that pull in another template by name. */
const PARTIAL_TAGS = new Set(['include', 'render', 'layout']);
/** Blocks whose contents Liquid does not run: an include written inside one is text. */
const INERT = new Map([
  ['raw', 'endraw'],
  ['comment', 'endcomment'],
]);

function literalName(args: string): string | undefined {
  const m = /^\s*(['"])(.*?)\1/.exec(args);
  return m ? m[2] : undefined;
}

function isTag(t: unknown): t is TagToken {
  return typeof (t as TagToken).name === 'string' && typeof (t as TagToken).args === 'string';
}

/**
 * The template ids `source` includes by a literal name ({% include 'x' %}, {% render "x" %}, {% layout 'x' %},
 * and the same lines inside {% liquid %}). A name given by a variable cannot be known before render time: the
 * renderer's limits (time, memory, a worker's timeout) stop those. Unparseable text gives no names.
 */
export function literalIncludes(source: string): string[] {
  const out = new Set<string>();
  const visit = (tokens: unknown[]) => {
    let skipUntil: string | undefined;
    for (const t of tokens) {
      if (!isTag(t)) continue;
      if (skipUntil) {
        if (t.name === skipUntil) skipUntil = undefined;
        continue;
      }
      if (INERT.has(t.name)) skipUntil = INERT.get(t.name);
      else if (t.name === 'liquid') visit(new Tokenizer(t.args).readLiquidTagTokens());
      else if (PARTIAL_TAGS.has(t.name)) {
        const n = literalName(t.args);
        if (n !== undefined) out.add(n);
      }
    }
  };
  try {
    visit(new Tokenizer(source).readTopLevelTokens());
  } catch {
    // A syntax error is reported when the template is rendered; it includes nothing we can see.
  }
  return [...out];
}

/**
 * A cycle of literal includes reachable from `start` in `sources` (id -> text), as the path of ids that closes
 * it (["a", "b", "a"]), or undefined. Rendering such a template never ends on its own: it is refused when saved.
 */
export function includeCycle(start: string, sources: Record<string, string>): string[] | undefined {
  const edges = new Map<string, string[]>();
  const next = (id: string) => {
    let e = edges.get(id);
    if (!e) {
      e = Object.hasOwn(sources, id) ? literalIncludes(sources[id]!) : [];
      edges.set(id, e);
    }
    return e;
  };
  const done = new Set<string>();
  const path: string[] = [];
  const onPath = new Set<string>();
  const dfs = (id: string): string[] | undefined => {
    if (onPath.has(id)) return [...path.slice(path.indexOf(id)), id];
    if (done.has(id)) return undefined;
    path.push(id);
    onPath.add(id);
    for (const n of next(id)) {
      const c = dfs(n);
      if (c) return c;
    }
    path.pop();
    onPath.delete(id);
    done.add(id);
    return undefined;
  };
  return dfs(start);
}
