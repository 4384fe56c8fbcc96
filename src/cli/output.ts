import { createRequire } from 'node:module';
import type Table from 'cli-table3';
import type YAML from 'yaml';
import { UsageError } from './errors.js';

// Loaded when a table or YAML is printed: JSON output (every script's) starts without them.
const load = createRequire(import.meta.url);
const yaml = (): typeof YAML => load('yaml');

/**
 * How results are printed: `table` for people (the default on a terminal), `json` for scripts (the default when
 * stdout is a pipe or a file: what a script gets never depends on a guess), `yaml` for editing and re-applying.
 */
export type OutputMode = 'table' | 'json' | 'yaml';

export type Io = {
  out(s: string): void;
  err(s: string): void;
  /** stdout is a terminal: default output is a table. */
  outTTY: boolean;
  /** stderr is a terminal: progress bars are drawn there. */
  errTTY: boolean;
};

export function outputMode(flag: string | undefined, env: NodeJS.ProcessEnv, outTTY: boolean): OutputMode {
  const v = flag ?? env.PLINTH_OUTPUT;
  if (v === undefined || v === '') return outTTY ? 'table' : 'json';
  if (v === 'table' || v === 'json' || v === 'yaml') return v;
  throw new UsageError(`--output '${v}' is not known: use table, json or yaml`);
}

const MAX_CELL = 64;

/** One cell: lists of scalars joined with commas, objects as compact JSON, long values shortened. */
export function cell(v: unknown, limit = MAX_CELL): string {
  let s: string;
  if (v === undefined || v === null) s = '';
  else if (typeof v === 'string') s = v;
  else if (typeof v === 'number' || typeof v === 'boolean') s = String(v);
  else if (Array.isArray(v) && v.every((x) => x === null || typeof x !== 'object')) s = v.join(',');
  else s = JSON.stringify(v);
  s = s.replace(/\s*\n\s*/g, ' ');
  return s.length > limit ? `${s.slice(0, limit - 1)}…` : s;
}

/** No borders, two spaces between columns: lines that grep, cut and awk take as they are. */
const PLAIN = Object.fromEntries(
  [
    'top',
    'top-mid',
    'top-left',
    'top-right',
    'bottom',
    'bottom-mid',
    'bottom-left',
    'bottom-right',
    'left',
    'left-mid',
    'mid',
    'mid-mid',
    'right',
    'right-mid',
    'middle',
  ].map((k) => [k, '']),
);

/** Columns sized by cli-table3, which measures wide and combining characters as a terminal shows them. */
export function table(headers: string[], rows: string[][]): string {
  const Cli: typeof Table = load('cli-table3');
  const t = new Cli({
    head: headers,
    chars: PLAIN,
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 2, compact: true },
  });
  t.push(...rows);
  return `${t
    .toString()
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n')}\n`;
}

/** Columns of a list when the command names none: the scalar and short-list fields of the first items. */
function guessColumns(items: Record<string, unknown>[]): string[] {
  const cols: string[] = [];
  for (const it of items.slice(0, 20))
    for (const [k, v] of Object.entries(it)) {
      const simple = v === null || typeof v !== 'object' || (Array.isArray(v) && v.every((x) => typeof x !== 'object'));
      if (simple && !cols.includes(k)) cols.push(k);
    }
  return cols.slice(0, 8);
}

export function listTable(items: Record<string, unknown>[], columns?: string[]): string {
  const cols = columns ?? guessColumns(items);
  return table(
    cols.map((c) => c.toUpperCase()),
    items.map((it) => cols.map((c) => cell(it[c]))),
  );
}

/** A single object as FIELD VALUE rows; nested values as compact JSON, never shortened. */
export function objectTable(obj: Record<string, unknown>): string {
  return table(
    ['FIELD', 'VALUE'],
    Object.entries(obj).map(([k, v]) => [k, cell(v, Number.POSITIVE_INFINITY)]),
  );
}

export function serialise(mode: 'json' | 'yaml', v: unknown): string {
  return mode === 'json' ? `${JSON.stringify(v, null, 2)}\n` : yaml().stringify(v);
}

/** Print a result: a list as rows, an object as fields, or the document as JSON/YAML. */
export function print(io: Io, mode: OutputMode, v: unknown, opts: { columns?: string[]; what?: string } = {}) {
  if (mode !== 'table') return io.out(serialise(mode, v));
  if (Array.isArray(v)) {
    if (v.length === 0) return io.err(`no ${opts.what ?? 'items'}\n`);
    if (v.every((x) => x && typeof x === 'object' && !Array.isArray(x))) return io.out(listTable(v, opts.columns));
    return io.out(`${v.map((x) => cell(x, Number.POSITIVE_INFINITY)).join('\n')}\n`);
  }
  if (v && typeof v === 'object') return io.out(objectTable(v as Record<string, unknown>));
  io.out(`${cell(v, Number.POSITIVE_INFINITY)}\n`);
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = n;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${x.toFixed(1)} ${units[i]}`;
}
