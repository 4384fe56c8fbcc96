// What commands read from their arguments: `-f FILE`/stdin, YAML or JSON documents, JSON values and
// `key=value` assignments. The command line itself is parsed by commander (program.ts).
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { UsageError } from './errors.js';

/** The text of `-f FILE`, or standard input for `-f -`. */
export function readInput(file: string): { text: string; name: string } {
  if (file === '-') {
    try {
      return { text: readFileSync(0, 'utf8'), name: 'standard input' };
    } catch (err) {
      throw new UsageError(`cannot read standard input: ${(err as Error).message}`);
    }
  }
  try {
    return { text: readFileSync(file, 'utf8'), name: file };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      `cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : (code ?? (err as Error).message)}`,
    );
  }
}

/** YAML or JSON (JSON is YAML): every document of the file, in order. */
export function parseDocs(text: string, name: string): unknown[] {
  let docs: YAML.Document[];
  try {
    docs = YAML.parseAllDocuments(text) as YAML.Document[];
  } catch (err) {
    throw new UsageError(`${name} is not YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  const out: unknown[] = [];
  for (const d of docs) {
    if (d.errors?.length) throw new UsageError(`${name} is not YAML or JSON: ${d.errors[0]!.message.split('\n')[0]}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  if (out.length === 0) throw new UsageError(`${name} holds no document`);
  return out;
}

/** One JSON value given on the command line (--merge '{...}'). */
export function parseJsonArg(flag: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${flag} must be JSON: ${(err as Error).message}`);
  }
}

/** `key=value`: the value is JSON when it parses as JSON (numbers, true, null, objects), a string otherwise. */
export function parseAssignment(s: string): [string, unknown] {
  const i = s.indexOf('=');
  if (i <= 0) throw new UsageError(`'${s}' is not key=value`);
  const k = s.slice(0, i);
  const raw = s.slice(i + 1);
  try {
    return [k, JSON.parse(raw)];
  } catch {
    return [k, raw];
  }
}
