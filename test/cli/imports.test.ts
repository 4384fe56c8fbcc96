import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

/** Every project file `entry` reaches through relative imports, type-only ones included. */
function reach(entry: string): string[] {
  const seen = new Set<string>();
  const stack = [path.join(root, entry)];
  while (stack.length) {
    const file = stack.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const src = readFileSync(file, 'utf8');
    for (const m of src.matchAll(/(?:from|import\()\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
      stack.push(path.resolve(path.dirname(file), m[1]!.replace(/\.js$/, '.ts')));
    }
  }
  return [...seen].map((f) => path.relative(root, f));
}

describe('the CLI', () => {
  it('is an API client: it reaches neither the store nor the daemon-side inventory', () => {
    const files = reach('src/cli/main.ts');
    expect(files).toContain('src/cli/resources.ts');
    expect(files.filter((f) => /^src\/(store|inventory|events)\b/.test(f))).toEqual([]);
  });
});
