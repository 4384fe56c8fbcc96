import type Database from 'better-sqlite3';

/** One putBatched write: an upsert of `json`, or a delete when it is null. */
export type BatchItem = { kind: string; key: string; json: string | null };
export type Prep = (sql: string) => Database.Statement;

export function durablePragmas(db: Database.Database): void;
export function etagOf(json: string): string;
export function statementCache(db: Database.Database): Prep;
export function batchTransaction(db: Database.Database, prep: Prep): Database.Transaction<(items: BatchItem[]) => void>;
export function encodeBatch(items: readonly BatchItem[]): (string | null)[];
export function decodeBatch(flat: readonly (string | null)[], into: BatchItem[]): BatchItem[];
export class PendingBatch<I, W> {
  items: I[];
  waiters: W[];
  take(): { items: I[]; waiters: W[] };
}
export function groupCommitter<W>(o: {
  commit(items: BatchItem[]): void;
  confirm(waiters: W[], error?: string): void;
  checkpoint(): void;
  checkpointEvery: number;
  defer?: (f: () => void) => void;
}): { add(items: readonly BatchItem[], waiter: W): void; flush(): void };
export function journalApplyTransaction(
  db: Database.Database,
  prep: Prep,
): Database.Transaction<(items: BatchItem[], seq: number) => void>;
export function journalApplied(db: Database.Database): number;
