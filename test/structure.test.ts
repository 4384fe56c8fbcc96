/**
 * The layout rules of issue 12, checked on the source tree so a change that breaks them fails here rather than in
 * a reviewer's head: src/boot stays pure (no store, no inventory), no protocol folder imports another, the CLI
 * talks to the daemon only over HTTP (no store), files stay under 450 lines and top-level functions (with the
 * closures inside them) under 150.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../src');
const MAX_FILE_LINES = 450;
const MAX_FUNCTION_LINES = 150;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return /\.(ts|mts|mjs|cjs)$/.test(e.name) && !/\.d\.m?ts$/.test(e.name) ? [p] : [];
  });
}

const files = sources(SRC).map((file) => ({
  file,
  rel: path.relative(SRC, file),
  text: readFileSync(file, 'utf8'),
}));

/** The src folders (or top-level files) a file imports, from its relative import specifiers. */
function importedAreas(f: (typeof files)[number]): string[] {
  const out: string[] = [];
  for (const m of f.text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
    const target = path.relative(SRC, path.resolve(path.dirname(f.file), m[1]!));
    if (target.startsWith('..')) continue;
    out.push(target.split(path.sep)[0]!.replace(/\.(js|ts|mjs|cjs)$/, ''));
  }
  return out;
}

const areaOf = (rel: string) => rel.split(path.sep)[0]!;

describe('source layout (issue 12)', () => {
  it('src/boot imports neither the store nor the inventory', () => {
    const bad = files
      .filter((f) => areaOf(f.rel) === 'boot')
      .flatMap((f) =>
        importedAreas(f)
          .filter((a) => a === 'store' || a === 'inventory')
          .map((a) => `${f.rel} -> ${a}`),
      );
    expect(bad).toEqual([]);
  });

  it('no protocol folder imports another protocol', () => {
    const protocols = ['dhcp', 'tftp', 'http'];
    const bad = files
      .filter((f) => protocols.includes(areaOf(f.rel)))
      .flatMap((f) =>
        importedAreas(f)
          .filter((a) => protocols.includes(a) && a !== areaOf(f.rel))
          .map((a) => `${f.rel} -> ${a}`),
      );
    expect(bad).toEqual([]);
  });

  it('the CLI imports no store', () => {
    const bad = files
      .filter((f) => areaOf(f.rel) === 'cli')
      .flatMap((f) =>
        importedAreas(f)
          .filter((a) => a === 'store')
          .map((a) => `${f.rel} -> ${a}`),
      );
    expect(bad).toEqual([]);
  });

  it(`every source file is under ${MAX_FILE_LINES} lines`, () => {
    const bad = files
      .map((f) => ({ rel: f.rel, lines: f.text.split('\n').length }))
      .filter((f) => f.lines >= MAX_FILE_LINES)
      .map((f) => `${f.rel}: ${f.lines} lines`);
    expect(bad).toEqual([]);
  });

  it(`no top-level function (closures included) or method is longer than ${MAX_FUNCTION_LINES} lines`, () => {
    const bad: string[] = [];
    for (const f of files) {
      const sf = ts.createSourceFile(f.file, f.text, ts.ScriptTarget.Latest, true);
      const visit = (n: ts.Node) => {
        const fn =
          ts.isFunctionDeclaration(n) ||
          ts.isMethodDeclaration(n) ||
          ts.isArrowFunction(n) ||
          ts.isFunctionExpression(n) ||
          ts.isConstructorDeclaration(n) ||
          ts.isAccessor(n);
        if (fn) {
          const from = sf.getLineAndCharacterOfPosition(n.getStart()).line;
          const to = sf.getLineAndCharacterOfPosition(n.getEnd()).line;
          if (to - from + 1 > MAX_FUNCTION_LINES) {
            const name = (n as { name?: ts.Node }).name?.getText(sf) ?? '(anonymous)';
            bad.push(`${f.rel}:${from + 1} ${name}: ${to - from + 1} lines`);
          }
          // Methods of a class inside the function count with it; nested functions are part of their parent.
          return;
        }
        ts.forEachChild(n, visit);
      };
      visit(sf);
    }
    expect(bad).toEqual([]);
  });

  it('the checks see the tree (a sanity floor, so an empty glob cannot pass)', () => {
    expect(files.length).toBeGreaterThan(80);
    expect(files.some((f) => f.rel === path.join('boot', 'decide.ts'))).toBe(true);
  });
});
