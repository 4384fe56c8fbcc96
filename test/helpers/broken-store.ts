import { BackendError, type Store } from '../../src/store/store.js';

/** A store whose every call fails like a full disk: the API must answer problem+json 503, never crash. */
export function brokenStore(): Store {
  const fail = () => Promise.reject(new BackendError('storage failed: SQLITE_FULL: database or disk is full'));
  return {
    get: fail,
    list: fail,
    keyOf: fail,
    create: fail,
    replace: fail,
    remove: fail,
    putBatched: fail,
    claimLease: fail,
    ping: () => Promise.resolve(false),
    close: () => Promise.resolve(),
  };
}

/** Wraps a working store and breaks it on demand (after setup, before the calls under test). */
export function breakableStore(inner: Store): Store & { broken: boolean } {
  const s: Store & { broken: boolean } = { broken: false } as never;
  const broken = brokenStore();
  for (const k of Object.keys(broken) as (keyof Store)[]) {
    (s as any)[k] = (...args: unknown[]) => ((s.broken ? broken : inner)[k] as any)(...args);
  }
  return s;
}
