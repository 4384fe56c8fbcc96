import { isDeepStrictEqual } from 'node:util';
import { HttpProblem } from './problem.js';

/** RFC 7396 JSON Merge Patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

type Op = { op: string; path: string; value?: unknown; from?: string };

/** RFC 6901 pointer -> tokens. */
function tokens(pointer: string, where: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/'))
    throw new HttpProblem(400, `${where}: '${pointer}' is not a JSON pointer`, [
      { path: where, message: 'must start with /' },
    ]);
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

const clone = <T>(v: T): T => structuredClone(v);

function parentOf(doc: unknown, toks: string[], where: string): { parent: any; key: string } {
  let cur: any = doc;
  for (const t of toks.slice(0, -1)) {
    if (cur === null || typeof cur !== 'object' || !(t in cur)) {
      throw new HttpProblem(409, `${where}: path does not exist in the document`, [
        { path: where, message: 'path does not exist' },
      ]);
    }
    cur = Array.isArray(cur) ? cur[Number(t)] : cur[t];
  }
  if (cur === null || typeof cur !== 'object') {
    throw new HttpProblem(409, `${where}: parent is not an object or array`, [
      { path: where, message: 'parent is not a container' },
    ]);
  }
  return { parent: cur, key: toks[toks.length - 1]! };
}

function arrayIndex(arr: unknown[], key: string, forAdd: boolean, where: string): number {
  if (forAdd && key === '-') return arr.length;
  if (!/^(0|[1-9]\d*)$/.test(key))
    throw new HttpProblem(400, `${where}: '${key}' is not an array index`, [
      { path: where, message: 'bad array index' },
    ]);
  const i = Number(key);
  if (i > arr.length || (!forAdd && i === arr.length)) {
    throw new HttpProblem(409, `${where}: index ${i} is out of range`, [
      { path: where, message: 'index out of range' },
    ]);
  }
  return i;
}

function getAt(doc: unknown, toks: string[], where: string): unknown {
  let cur: any = doc;
  for (const t of toks) {
    if (cur === null || typeof cur !== 'object' || !(t in cur)) {
      throw new HttpProblem(409, `${where}: path does not exist in the document`, [
        { path: where, message: 'path does not exist' },
      ]);
    }
    cur = cur[t];
  }
  return cur;
}

function add(doc: unknown, toks: string[], value: unknown, where: string): unknown {
  if (toks.length === 0) return value;
  const { parent, key } = parentOf(doc, toks, where);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, true, where), 0, value);
  else parent[key] = value;
  return doc;
}

function remove(doc: unknown, toks: string[], where: string): unknown {
  if (toks.length === 0) throw new HttpProblem(400, `${where}: cannot remove the whole document`);
  const { parent, key } = parentOf(doc, toks, where);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, false, where), 1);
  else {
    if (!(key in parent))
      throw new HttpProblem(409, `${where}: path does not exist in the document`, [
        { path: where, message: 'path does not exist' },
      ]);
    delete parent[key];
  }
  return doc;
}

/** RFC 6902 JSON Patch. A failed `test` or a missing path is a 409; a malformed patch a 400. */
export function jsonPatch(target: unknown, patch: unknown): unknown {
  if (!Array.isArray(patch)) throw new HttpProblem(400, 'a JSON Patch body must be an array of operations');
  let doc = clone(target);
  patch.forEach((raw, i) => {
    const where = String(i);
    if (raw === null || typeof raw !== 'object')
      throw new HttpProblem(400, `operation ${i} is not an object`, [{ path: where, message: 'not an object' }]);
    const op = raw as Op;
    if (typeof op.path !== 'string')
      throw new HttpProblem(400, `operation ${i} has no path`, [{ path: `${where}.path`, message: 'required' }]);
    const toks = tokens(op.path, `${where}.path`);
    const needValue = ['add', 'replace', 'test'].includes(op.op);
    if (needValue && !('value' in op))
      throw new HttpProblem(400, `operation ${i} (${op.op}) needs a value`, [
        { path: `${where}.value`, message: 'required' },
      ]);
    switch (op.op) {
      case 'add':
        doc = add(doc, toks, clone(op.value), where);
        break;
      case 'remove':
        doc = remove(doc, toks, where);
        break;
      case 'replace':
        getAt(doc, toks, where);
        doc = toks.length === 0 ? clone(op.value) : add(remove(doc, toks, where), toks, clone(op.value), where);
        break;
      case 'move':
      case 'copy': {
        if (typeof op.from !== 'string')
          throw new HttpProblem(400, `operation ${i} (${op.op}) needs from`, [
            { path: `${where}.from`, message: 'required' },
          ]);
        const from = tokens(op.from, `${where}.from`);
        const v = clone(getAt(doc, from, where));
        if (op.op === 'move') {
          if (op.path.startsWith(`${op.from}/`))
            throw new HttpProblem(400, `operation ${i}: cannot move a value into itself`);
          doc = remove(doc, from, where);
        }
        doc = add(doc, toks, v, where);
        break;
      }
      case 'test':
        if (!isDeepStrictEqual(getAt(doc, toks, where), op.value)) {
          throw new HttpProblem(409, `operation ${i}: test failed at ${op.path}`, [
            { path: where, message: 'test failed' },
          ]);
        }
        break;
      default:
        throw new HttpProblem(
          400,
          `operation ${i}: unknown op '${String(op.op)}' (add, remove, replace, move, copy, test)`,
          [{ path: `${where}.op`, message: 'unknown op' }],
        );
    }
  });
  return doc;
}
