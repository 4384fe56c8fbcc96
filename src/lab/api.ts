import { execFileSync } from 'node:child_process';

/**
 * The REST API as an operator's CI script drives it: curl, run inside the lab namespace (where Plinth listens).
 */
export type CurlResult = { status: number; body: any; text: string };

export function nsCurl(ns: string, base: string, token: string, opts: { cacert?: string } = {}) {
  // An https:// base is verified against the daemon's certificate (its data dir's tls/cert.pem for a lab daemon).
  const tls = opts.cacert ? ['--cacert', opts.cacert] : [];
  const call = (args: string[], input?: string | Buffer): CurlResult => {
    let out: string;
    try {
      out = execFileSync(
        'ip',
        [
          'netns',
          'exec',
          ns,
          'curl',
          '-s',
          ...tls,
          '-w',
          '\n%{http_code}',
          '-H',
          `Authorization: Bearer ${token}`,
          ...args,
        ],
        { input, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 },
      );
    } catch (err) {
      // curl could not connect (not up yet, or down): status 0, as a script checking `%{http_code}` sees it.
      return { status: 0, body: undefined, text: String((err as { stderr?: string }).stderr ?? err) };
    }
    const cut = out.lastIndexOf('\n');
    const text = out.slice(0, cut);
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    return { status: Number(out.slice(cut + 1)), body, text };
  };
  return {
    json(method: string, path: string, body?: unknown, contentType = 'application/json'): CurlResult {
      const args = ['-X', method, `${base}${path}`];
      if (body === undefined) return call(args);
      return call([...args, '-H', `Content-Type: ${contentType}`, '--data-binary', '@-'], JSON.stringify(body));
    },
    upload(localFile: string, remotePath: string): CurlResult {
      return call(['-T', localFile, `${base}/api/v1/files/${remotePath}`]);
    },
    get(path: string): CurlResult {
      return call([`${base}${path}`]);
    },
  };
}
