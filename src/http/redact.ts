/**
 * Tokens never reach a log line, not even in a query string (a machine's initrd passes `?token=` to busybox wget).
 * Used by the request log line (app.ts) and the routes that write their own (files-serve.ts).
 */
export function logUrl(url: string): string {
  // Most URLs have no query string: no token to mask, and no regex run on the hot path.
  if (!url.includes('?')) return url;
  return url.replace(/([?&]token=)[^&]*/gi, '$1[secure]');
}
