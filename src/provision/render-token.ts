import { issueToken, newToken } from '../inventory/tokens.js';
import type { Machine } from '../model/machine.js';
import type { Store } from '../store/store.js';
import type { TokenCheck } from './trust.js';

/**
 * Machine tokens for renders. A render gets a candidate token; only when the request is the machine, the render
 * succeeds and its text carries the candidate verbatim is the token stored (a missing file, a render error or a
 * template without `{{ token }}` mints nothing). A machine's token stays in use for `reuseMs` after it was minted,
 * so a boot that fetches ten files leaves one token row, not ten.
 *
 * For anyone else the candidate is a random string that is never stored, replaced by '' in the text: the timeline
 * can still say a token was withheld, and a template that transforms the token (base64) leaks nothing usable.
 * A token that only appears transformed in the output is not recognised, so it is not stored either.
 */
export type RenderToken = { value: string; stored: boolean; trusted: boolean };

export function renderTokens(deps: {
  store: Store;
  checkToken: TokenCheck;
  /** Token lifetime for a new token, seconds (the knownTokenTtl pref). */
  ttlSeconds: () => Promise<number>;
  reuseMs?: number;
  now?: () => number;
}) {
  const reuseMs = deps.reuseMs ?? 10 * 60_000;
  const now = deps.now ?? Date.now;
  const recent = new Map<string, { token: string; mintedAt: number; expiresAt: number }>();

  return {
    async candidate(m: Pick<Machine, 'uuid'>, trusted: boolean): Promise<RenderToken> {
      if (!trusted) return { value: newToken(), stored: false, trusted };
      const r = recent.get(m.uuid);
      const t = now();
      if (r && t - r.mintedAt < reuseMs && r.expiresAt - t > reuseMs) {
        // Still valid in the store (not revoked meanwhile)?
        const p = await deps.checkToken(r.token);
        if (p?.machine === m.uuid) return { value: r.token, stored: true, trusted };
      }
      recent.delete(m.uuid);
      return { value: newToken(), stored: false, trusted };
    },

    /** The text to send: the candidate stored when used by the machine, blanked when not the machine. */
    async settle(
      m: Pick<Machine, 'uuid' | 'name'>,
      tok: RenderToken,
      text: string,
    ): Promise<{ text: string; used: boolean }> {
      const used = text.includes(tok.value);
      if (!tok.trusted) return { text: used ? text.split(tok.value).join('') : text, used };
      if (used && !tok.stored) {
        const t = now();
        const expiresAt = t + (await deps.ttlSeconds()) * 1000;
        await issueToken(deps.store, tok.value, {
          name: `machine ${m.name}`,
          role: 'machine',
          machine: m.uuid,
          createdAt: new Date(t).toISOString(),
          expiresAt: new Date(expiresAt).toISOString(),
        });
        if (recent.size >= 10_000) recent.delete(recent.keys().next().value!);
        recent.set(m.uuid, { token: tok.value, mintedAt: t, expiresAt });
      }
      return { text, used };
    },
  };
}
export type RenderTokens = ReturnType<typeof renderTokens>;
