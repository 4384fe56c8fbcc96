import { readFileSync } from 'node:fs';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import YAML from 'yaml';
import { UsageError } from './errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * parseArgs refuses a value that starts with '-' (`--sort -name`, `-f -`) as ambiguous; for options that take a
 * value, the next argument is the value, whatever it looks like.
 */
function joinValues(args: string[], options: Options): string[] {
  const takesValue = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type !== 'string') continue;
    takesValue.add(`--${name}`);
    if (o.short) takesValue.add(`-${o.short}`);
  }
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    if (takesValue.has(a) && i + 1 < args.length) {
      const long = a.startsWith('--') ? a : `--${Object.entries(options).find(([, o]) => `-${o.short}` === a)![0]}`;
      out.push(`${long}=${args[++i]}`);
    } else out.push(a);
  }
  return out;
}

/** node:util parseArgs, strict, with its complaints turned into a usage error that points at the help. */
export function parseCommand<O extends Options>(
  args: string[],
  options: O,
  usage: { help: string; min?: number; max?: number },
) {
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: joinValues(args, options),
      allowPositionals: true,
      options,
      strict: true,
    }) as typeof parsed;
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]!.replace(/\. To specify.*$/, ''), usage.help);
  }
  const n = parsed.positionals.length;
  if (usage.min !== undefined && n < usage.min) throw new UsageError('missing argument', usage.help);
  if (usage.max !== undefined && n > usage.max)
    throw new UsageError(`unexpected argument '${parsed.positionals[usage.max]}'`, usage.help);
  return parsed;
}

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
