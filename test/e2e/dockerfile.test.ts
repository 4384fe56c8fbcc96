/**
 * The Dockerfile's steps, run as written, without a Docker engine (issue 14: "test what can be tested"): the build
 * context is this tree filtered by .dockerignore, copied to a clean directory; each stage's COPY, WORKDIR, ENV and
 * RUN are replayed there in order (image paths mapped under a per-stage root); the runtime stage's ENTRYPOINT is
 * started and its HEALTHCHECK command must pass. So a step that breaks (npm ci from the lock file, the native
 * build, typecheck, build, prune) or a file the image needs but .dockerignore leaves out fails here.
 *
 * What cannot run here is named, not guessed: the RUN lines that install Debian packages, set file capabilities or
 * create the volume for the `node` user (root-level image set-up; the host provides those packages), the base
 * image's Node version (the host's runs), and USER. Any other RUN line is executed; a new system-level line
 * fails the test until it is listed. Slow (npm ci and native builds in a clean directory): e2e suite.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { minimatch } from 'minimatch';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');

/** Root-level image set-up this test does not replay (matched on the start of the RUN line). */
const NOT_REPLAYED = [
  'apt-get update && apt-get install -y --no-install-recommends python3 make g++',
  'apt-get update && apt-get install -y --no-install-recommends libcap2-bin ipxe',
  'mkdir -p /var/lib/plinth && chown node:node /var/lib/plinth',
];

/** A RUN line that touches the system (packages, capabilities, users, paths outside /app) is never run here. */
const SYSTEM_LEVEL = /\b(apt-get|apt|dpkg|setcap|chown|chmod|useradd|adduser|groupadd)\b|(^|[\s;&|])\/(?!app\b)/;

type Instr = { op: string; args: string };

/** Instructions in order: continuation lines joined, comments and blank lines dropped. */
function parseDockerfile(text: string): Instr[] {
  const out: Instr[] = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!cur && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      cur += `${line.slice(0, -1)} `;
      continue;
    }
    cur += line;
    const m = /^(\S+)\s+([\s\S]*)$/.exec(cur.trim())!;
    out.push({ op: m[1]!.toUpperCase(), args: m[2]!.replace(/\s+/g, ' ').trim() });
    cur = '';
  }
  return out;
}

/** The build context: tracked and untracked files not ignored by git, minus what .dockerignore excludes. */
function contextFiles(): string[] {
  const patterns = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const excluded = (file: string) => {
    let out = false;
    const parts = file.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    for (const p of patterns) {
      const neg = p.startsWith('!');
      const pat = neg ? p.slice(1) : p;
      if (prefixes.some((x) => minimatch(x, pat, { dot: true }))) out = !neg;
    }
    return out;
  };
  return execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: ROOT, encoding: 'utf8' })
    .split('\0')
    .filter((f) => f && existsSync(path.join(ROOT, f)) && !excluded(f));
}

const canUnshare = spawnSync('unshare', ['-rn', 'true']).status === 0;

describe.skipIf(!canUnshare)('the Dockerfile, replayed in a clean directory', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'plinth-dockerfile-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('builds (npm ci, native, typecheck, build, prune), starts, and passes its HEALTHCHECK', () => {
    const ctx = path.join(work, 'context');
    const files = contextFiles();
    for (const f of files) cpSync(path.join(ROOT, f), path.join(ctx, f), { recursive: true });
    // Host state must not be in the context (the image builds its own).
    expect(files.filter((f) => /^(node_modules|native\/build|var|\.lab|dist)\//.test(f))).toEqual([]);

    const stages = new Map<string, string>();
    let stageRoot = '';
    let wd = '/';
    let env: Record<string, string> = {};
    const skipped: string[] = [];
    const inImage = (p: string) => path.join(stageRoot, path.posix.resolve(wd, p));
    let healthcheck: string[] = [];
    let entrypoint: string[] = [];
    const log: string[] = [];
    const instrs = parseDockerfile(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
    for (const { op, args } of instrs) {
      if (op === 'FROM') {
        const name = /\bAS\s+(\S+)/i.exec(args)?.[1] ?? `stage${stages.size}`;
        stageRoot = path.join(work, 'stages', name);
        mkdirSync(stageRoot, { recursive: true });
        stages.set(name, stageRoot);
        wd = '/';
        env = {};
      } else if (op === 'WORKDIR') {
        wd = path.posix.resolve(wd, args);
        mkdirSync(inImage('.'), { recursive: true });
      } else if (op === 'ENV') {
        for (const m of args.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
      } else if (op === 'COPY') {
        const words = args.split(' ');
        const from = words[0]!.startsWith('--from=') ? stages.get(words.shift()!.slice(7))! : undefined;
        const dest = words.pop()!;
        for (const src of words) {
          const s = path.join(from ?? ctx, src);
          // A directory's contents go into the destination; a file goes into it when it is a directory.
          const intoDir = statSync(s).isDirectory() || dest.endsWith('/') || words.length > 1;
          const d = statSync(s).isDirectory()
            ? inImage(dest)
            : intoDir
              ? path.join(inImage(dest), path.basename(src))
              : inImage(dest);
          cpSync(s, d, { recursive: true });
        }
      } else if (op === 'RUN') {
        if (NOT_REPLAYED.some((p) => args.startsWith(p))) {
          skipped.push(args);
          continue;
        }
        // Fail rather than run a new system-level line on the host: it must be listed above, or kept out of it.
        expect(SYSTEM_LEVEL.test(args), `RUN ${args}: system-level, not replayed; list it in NOT_REPLAYED`).toBe(false);
        log.push(`RUN ${args}`);
        const r = spawnSync('bash', ['-ec', args], {
          cwd: inImage('.'),
          env: { ...process.env, ...env, npm_config_update_notifier: 'false', npm_config_fund: 'false' },
          encoding: 'utf8',
          timeout: 1_200_000,
          maxBuffer: 64 * 1024 * 1024,
        });
        expect(r.status, `RUN ${args}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`).toBe(0);
      } else if (op === 'HEALTHCHECK') {
        healthcheck = JSON.parse(/CMD (\[.*\])$/.exec(args)![1]!);
      } else if (op === 'ENTRYPOINT') {
        entrypoint = JSON.parse(args);
      }
    }
    // Every RUN line this test does not replay is one it knows about.
    expect(skipped.sort()).toEqual(
      instrs
        .filter((i) => i.op === 'RUN' && NOT_REPLAYED.some((p) => i.args.startsWith(p)))
        .map((i) => i.args)
        .sort(),
    );
    expect(skipped).toHaveLength(NOT_REPLAYED.length);
    const app = inImage('.');
    // The image holds compiled code, runtime dependencies only, and no test tree.
    expect(existsSync(path.join(app, 'dist'))).toBe(true);
    expect(existsSync(path.join(app, 'node_modules/vitest'))).toBe(false);
    expect(existsSync(path.join(app, 'test'))).toBe(false);
    expect(existsSync(path.join(app, 'native/build/Release/plinth_net.node'))).toBe(true);

    // Start it as the image does (its data dir is the volume: here a fresh directory), in a network namespace of
    // its own so the default ports are free, and ask the HEALTHCHECK until it passes (bounded: 90 s).
    const data = path.join(work, 'volume');
    mkdirSync(data);
    const q = (a: string[]) => a.map((s) => `'${s.replace(/'/g, `'\\''`)}'`).join(' ');
    writeFileSync(
      path.join(work, 'run.sh'),
      `ip link set lo up
${q(entrypoint)} > ${q([path.join(work, 'daemon.log')])} 2>&1 &
pid=$!
rc=1
for i in $(seq 180); do
  if ${q(healthcheck)}; then rc=0; break; fi
  kill -0 $pid 2>/dev/null || break
  sleep 0.5
done
kill -TERM $pid 2>/dev/null; wait $pid
echo "healthcheck rc=$rc"
exit $rc
`,
    );
    const r = spawnSync('unshare', ['-rn', 'bash', path.join(work, 'run.sh')], {
      cwd: app,
      env: { PATH: process.env.PATH!, HOME: work, ...env, PLINTH_DATA_DIR: data },
      encoding: 'utf8',
      timeout: 120_000,
    });
    const daemonLog = existsSync(path.join(work, 'daemon.log'))
      ? readFileSync(path.join(work, 'daemon.log'), 'utf8')
      : '';
    expect(r.status, `${r.stdout}${r.stderr}\n${daemonLog.slice(-4000)}`).toBe(0);
    // The admin token is created in the volume at first start (what the README tells the operator to read).
    expect(existsSync(path.join(data, 'admin.token'))).toBe(true);
  }, 1_800_000);
});
