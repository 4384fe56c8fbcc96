/**
 * Back up and restore the database. The WAL journal makes a copy of plinth.db alone unsafe (committed writes
 * may still be in plinth.db-wal), so a backup is SQLite's online backup of a live connection: a consistent
 * snapshot taken while the daemon serves (GET /api/v1/backup, `plinth backup FILE`). Restore is offline and
 * daemon-side (`plinth restore FILE --data-dir DIR`, a sibling of `plinth serve`): it refuses while a daemon has
 * the database open, checks the file, keeps the database it replaces, and the next start migrates an older schema.
 */
import { chmodSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { segments } from './store/journal-recovery.js';
import { MIGRATIONS } from './store/migrations.js';

export const DB_FILE = 'plinth.db';

/**
 * A consistent copy of `dbFile` at `dest`, from a connection of its own. All pages are copied in one step: a
 * write landing between steps would restart SQLite's backup from the beginning (a busy DHCP segment could keep
 * it restarting); one step is one read transaction, which in WAL mode blocks no writer.
 */
export async function snapshotDatabase(dbFile: string, dest: string): Promise<{ pages: number }> {
  const db = new Database(dbFile, { fileMustExist: true, timeout: 5000 });
  try {
    const r = await db.backup(dest, { progress: ({ totalPages }) => Math.max(totalPages, 100) });
    return { pages: r.totalPages };
  } finally {
    db.close();
  }
}

export class RestoreError extends Error {}

/** What a backup file holds: refused unless it is an intact Plinth database this version can open. */
export function checkBackup(file: string): { schemaVersion: number; machines: number } {
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new RestoreError(`${file} cannot be opened: ${(err as Error).message}`);
  }
  try {
    const ok = db.pragma('quick_check', { simple: true });
    if (ok !== 'ok') throw new RestoreError(`${file} is damaged: ${String(ok)}`);
    const version = db.pragma('user_version', { simple: true }) as number;
    const latest = MIGRATIONS.at(-1)!.version;
    if (version < 1) throw new RestoreError(`${file} is not a Plinth database (schema version 0)`);
    if (version > latest)
      throw new RestoreError(
        `${file} has schema version ${version}; this Plinth knows up to ${latest}: use a newer one`,
      );
    const machines = (db.prepare('SELECT count(*) AS n FROM machines').get() as { n: number }).n;
    return { schemaVersion: version, machines };
  } catch (err) {
    if (err instanceof RestoreError) throw err;
    throw new RestoreError(`${file} is not a Plinth database: ${(err as Error).message}`);
  } finally {
    db.close();
  }
}

/**
 * Refuses while another connection (a running daemon) has the database open: in WAL mode every open connection
 * holds a shared lock, so an exclusive lock is granted only when no one else is there. Then the WAL is folded
 * in and closed, so the file can be moved aside whole.
 */
function takeOffline(dbFile: string): void {
  let db: Database.Database;
  try {
    db = new Database(dbFile, { fileMustExist: true, timeout: 200 });
  } catch (err) {
    throw new RestoreError(`${dbFile} cannot be opened: ${(err as Error).message}`);
  }
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('COMMIT');
    db.pragma('wal_checkpoint(TRUNCATE)');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY'))
      throw new RestoreError(`${dbFile} is in use (is the daemon running?): stop it, then restore`);
    throw new RestoreError(`${dbFile}: ${(err as Error).message}`);
  }
  db.close();
}

const exists = (f: string) => {
  try {
    statSync(f);
    return true;
  } catch {
    return false;
  }
};

/**
 * Replaces DIR/plinth.db with the backup `file`. The database replaced is kept as plinth.db.before-restore-<time>.
 * Returns what was done, for the operator.
 */
export async function restoreDatabase(file: string, dataDir: string, now = new Date()): Promise<string[]> {
  const info = checkBackup(file);
  const target = path.join(dataDir, DB_FILE);
  const said: string[] = [];
  const tmp = `${target}.restore-tmp`;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  rmSync(tmp, { force: true });
  // A copy through the backup API: the file given may itself be in WAL mode with a journal beside it.
  const src = new Database(file, { readonly: true, fileMustExist: true });
  try {
    await src.backup(tmp);
  } finally {
    src.close();
  }
  // The database holds secure params in clear: owner only, as the daemon keeps it (src/store/sqlite.ts).
  chmodSync(tmp, 0o600);
  if (exists(target)) {
    try {
      takeOffline(target);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
    const kept = `${target}.before-restore-${now.toISOString().replace(/[:.]/g, '-')}`;
    renameSync(target, kept);
    for (const s of ['-wal', '-shm']) rmSync(`${target}${s}`, { force: true });
    // A lease journal a crash left belongs to the database replaced: it goes with it, never into the restored one.
    for (const s of segments(target)) renameSync(s.path, kept + s.path.slice(target.length));
    said.push(`kept the database it replaces as ${kept}`);
  }
  renameSync(tmp, target);
  said.push(
    `restored ${file} (schema version ${info.schemaVersion}, ${info.machines} machines) to ${target}; ` +
      `the next start migrates it to version ${MIGRATIONS.at(-1)!.version} if older`,
  );
  return said;
}

export const RESTORE_USAGE = `Usage: plinth restore FILE [--data-dir DIR]

Replaces the database in DIR (default PLINTH_DATA_DIR or ./var) with FILE, a backup from 'plinth backup'.
The daemon must be stopped; the replaced database is kept beside it as plinth.db.before-restore-<time>.`;

/** `plinth restore FILE [--data-dir DIR]`; returns the exit code (0 ok, 1 refused, 2 usage). */
export async function runRestore(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  out: { write(s: string): unknown } = process.stdout,
  err: { write(s: string): unknown } = process.stderr,
): Promise<number> {
  const { parseArgs } = await import('node:util');
  let parsed: { values: { 'data-dir'?: string; help?: boolean }; positionals: string[] };
  try {
    parsed = parseArgs({
      args: argv,
      options: { 'data-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    err.write(`plinth restore: ${(e as Error).message}\n${RESTORE_USAGE}\n`);
    return 2;
  }
  if (parsed.values.help) {
    out.write(`${RESTORE_USAGE}\n`);
    return 0;
  }
  if (parsed.positionals.length !== 1) {
    err.write(`${RESTORE_USAGE}\n`);
    return 2;
  }
  const dataDir = path.resolve(parsed.values['data-dir'] ?? env.PLINTH_DATA_DIR ?? './var');
  try {
    for (const line of await restoreDatabase(parsed.positionals[0]!, dataDir)) out.write(`${line}\n`);
    return 0;
  } catch (e) {
    if (!(e instanceof RestoreError)) throw e;
    err.write(`plinth restore: ${e.message}\n`);
    return 1;
  }
}
