import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The reference HTTP server of the benchmarks, in its best static-file configuration: one worker, sendfile with
 * tcp_nopush (headers and the first bytes of the file in one segment), large sendfile chunks, no access log,
 * keep-alive without a request cap (wrk reuses its connections), everything it writes under `dir`. Workers run as
 * the master's user: Plinth keeps its data directory 0700, and the benches serve files out of it. Writes the config
 * and returns the argv that runs it in the foreground.
 */
export function nginxCommand(dir: string, listen: string, root: string, workerConnections = 1024): string[] {
  mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  const user = process.getuid?.() === 0 ? 'user root root;' : '';
  writeFileSync(
    conf,
    `worker_processes 1; daemon off; ${user} pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections ${workerConnections}; }
http { access_log off; sendfile on; tcp_nopush on; tcp_nodelay on; sendfile_max_chunk 0;
  keepalive_requests 1000000; open_file_cache max=64 inactive=60s; open_file_cache_valid 60s;
  client_body_temp_path ${dir}; proxy_temp_path ${dir};
  fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server { listen ${listen} reuseport backlog=4096; root ${root}; } }\n`,
  );
  return ['nginx', '-c', conf, '-p', dir];
}
