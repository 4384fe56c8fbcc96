import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, vi } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { ROOT } from '../helpers/proc.js';

/** The installed command (runs dist/ when built): dispatch.test.ts and build.test.ts run it. */
export const BIN = path.join(ROOT, 'bin/plinth.js');

/**
 * The CLI as operators run it, in a child process, from the sources (`npm run dev`'s way): what is tested is the
 * code in src/, never a dist/ left over from an earlier build.
 */
export const FROM_SOURCE = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/main.ts')];

export type CliResult = { code: number | null; stdout: string; stderr: string; json(): any };

/** The environment of the test runner without any PLINTH_* setting that would change what the CLI does. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PLINTH_') && v !== undefined) env[k] = v;
  return { ...env, ...extra };
}

export function spawnCli(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; node?: string[] } = {},
): ChildProcess & { out: () => string; err: () => string } {
  const child = spawn(process.execPath, [...(opts.node ?? []), ...FROM_SOURCE, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: cleanEnv(opts.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b) => {
    out += b;
  });
  child.stderr!.on('data', (b) => {
    err += b;
  });
  return Object.assign(child, { out: () => out, err: () => err });
}

export async function cli(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; input?: string; node?: string[]; timeoutMs?: number } = {},
): Promise<CliResult> {
  const child = spawnCli(args, opts);
  child.stdin!.on('error', () => {});
  child.stdin!.end(opts.input ?? '');
  const code = await new Promise<number | null>((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`plinth ${args.join(' ')} did not exit in time; stderr: ${child.err()}`));
    }, opts.timeoutMs ?? 60_000);
    child.on('close', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
  const stdout = child.out();
  const stderr = child.err();
  return {
    code,
    stdout,
    stderr,
    json() {
      try {
        return JSON.parse(stdout);
      } catch {
        throw new Error(
          `stdout of plinth ${args.join(' ')} is not JSON (exit ${code}):\n${stdout}\nstderr:\n${stderr}`,
        );
      }
    },
  };
}

/** A CLI bound to one test daemon through the environment, as an operator's shell would be. */
export function cliFor(d: { url: string; token: string }) {
  return (args: string[], opts: Parameters<typeof cli>[1] = {}) =>
    cli(args, { ...opts, env: { PLINTH_ENDPOINT: d.url, PLINTH_TOKEN: d.token, ...opts.env } });
}

export type CliSuite = { d: TestDaemon; run: ReturnType<typeof cliFor>; tmp: string };

/**
 * One live daemon, a CLI bound to it and a scratch directory for a test file, torn down after it. `use` receives
 * them once they exist (e.g. `useCliDaemon('plinth-cli-x-', (s) => ({ d, run, tmp } = s))`).
 */
export function useCliDaemon(tmpPrefix: string, use: (s: CliSuite) => void): void {
  // Each case runs the CLI as a process, often several times (~1 s each under tsx): room for a loaded machine.
  vi.setConfig({ testTimeout: 90_000 });
  let s: CliSuite | undefined;
  beforeAll(async () => {
    const d = await startTestDaemon();
    s = { d, run: cliFor(d), tmp: mkdtempSync(path.join(tmpdir(), tmpPrefix)) };
    use(s);
  });
  afterAll(async () => {
    await s?.d.stop();
    if (s) rmSync(s.tmp, { recursive: true, force: true });
  });
}

/** The CLI in this process (same code as the binary, minus the process): for wide matrices of cheap cases. */
export async function cliInProcess(args: string[], env: Record<string, string> = {}) {
  const { run } = await import('../../src/cli/main.js');
  let stdout = '';
  let stderr = '';
  const code = await run(args, {
    env: cleanEnv(env),
    cwd: ROOT,
    io: {
      out: (s) => {
        stdout += s;
      },
      err: (s) => {
        stderr += s;
      },
      outTTY: false,
      errTTY: false,
    },
  });
  return { code, stdout, stderr };
}

/** The CLI under script(1): stdout and stderr are a pseudo-terminal, as in an operator's shell. */
export function cliInTty(args: string[], env: Record<string, string>): Promise<{ code: number | null; text: string }> {
  const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  const cmd = [process.execPath, ...FROM_SOURCE, ...args].map(quote).join(' ');
  return new Promise((resolve) => {
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], {
      env: cleanEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout!.on('data', (b) => {
      text += b;
    });
    child.on('close', (code) => resolve({ code, text }));
  });
}
