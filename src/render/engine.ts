import { Liquid, type LiquidError } from 'liquidjs';

/**
 * Templates arrive through the API, so they are untrusted: LiquidJS interprets them (no compilation to
 * JavaScript), reads only own properties of the context, has no file system (includes resolve to other
 * templates by id, from memory), and is bounded in parse size, render time and memory.
 */
export class RenderError extends Error {
  constructor(
    message: string,
    readonly template: string,
    readonly line?: number,
  ) {
    super(message);
  }
}

export type RenderInput = {
  /** Name shown in errors: "bootenv lab / ipxe" or "template cloud-init". */
  name: string;
  source: string;
  context: Record<string, unknown>;
  /** Other templates by id, for {% include 'id' %} / {% render 'id' %}. */
  templates?: Record<string, string>;
  /** Filters bound to this render (param lookup with the machine's resolved params). */
  filters?: Record<string, (value: unknown, ...args: unknown[]) => unknown>;
};

const LIMITS = { parseLimit: 1_000_000, renderLimit: 2_000, memoryLimit: 32 * 1024 * 1024 };

function lineOf(err: unknown): number | undefined {
  const e = err as LiquidError & { token?: { getPosition?: () => [number, number] } };
  const pos = e.token?.getPosition?.();
  if (pos) return pos[0];
  const m = /line:(\d+)/.exec(String(e.message));
  return m ? Number(m[1]) : undefined;
}

export async function renderTemplate(input: RenderInput): Promise<string> {
  const engine = new Liquid({
    templates: input.templates ?? {},
    ownPropertyOnly: true,
    strictFilters: true,
    strictVariables: false,
    dynamicPartials: true,
    extname: '',
    ...LIMITS,
  });
  for (const [name, fn] of Object.entries(input.filters ?? {})) engine.registerFilter(name, fn);
  let tpl: ReturnType<Liquid['parse']>;
  try {
    tpl = engine.parse(input.source);
  } catch (err) {
    const line = lineOf(err);
    throw new RenderError(`${input.name}${line ? ` line ${line}` : ''}: ${firstLine(err)}`, input.name, line);
  }
  try {
    return await engine.render(tpl, input.context);
  } catch (err) {
    // An error thrown by our own filters (a missing param) carries its message through Liquid's wrapper.
    const cause = (err as { originalError?: Error }).originalError;
    const inner = cause instanceof RenderError ? cause.message : firstLine(err);
    const line = lineOf(err);
    throw new RenderError(`${input.name}${line ? ` line ${line}` : ''}: ${inner}`, input.name, line);
  }
}

function firstLine(err: unknown): string {
  return String((err as Error).message ?? err)
    .split('\n')[0]!
    .replace(/, line:\d+, col:\d+$/, '')
    .replace(/^ENOENT: Failed to lookup "([^"]*)".*$/, "included template '$1' does not exist");
}
