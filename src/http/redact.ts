/**
 * Tokens never reach a log line, not even in a query string (a machine's initrd passes `?token=` to busybox wget).
 * The same rule as app.ts's logUrl, shared by the routes that write their own log lines (files-serve.ts).
 */
export function logUrl(url: string): string {
  return url.replace(/([?&]token=)[^&]*/gi, '$1[secure]');
}
