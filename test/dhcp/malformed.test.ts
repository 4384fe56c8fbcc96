import { afterEach, describe, expect, it } from 'vitest';
import { capturedLog, type TestEnv, testEnv } from './helpers.js';

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

describe('malformed packets', () => {
  it('are counted, dropped without a reply, and logged once per source per interval', async () => {
    const { log, lines } = capturedLog();
    env = await testEnv(undefined, { log, malformedLogIntervalMs: 300 });
    const garbage = [Buffer.alloc(10), Buffer.alloc(300, 0xff), Buffer.from('not dhcp at all')];
    for (let i = 0; i < 6; i++) await env.client.send(garbage[i % 3]!, env.p.port);
    await new Promise((r) => setTimeout(r, 150));
    expect(env.server.stats.malformed).toBe(6);
    expect(lines.filter((l) => l.includes('malformed'))).toHaveLength(1);
    expect(env.client.raw).toHaveLength(0);
    await new Promise((r) => setTimeout(r, 300));
    await env.client.send(garbage[0]!, env.p.port);
    await new Promise((r) => setTimeout(r, 100));
    const logged = lines.filter((l) => l.includes('malformed'));
    expect(logged).toHaveLength(2);
    expect(JSON.parse(logged[1]!)).toMatchObject({ src: '127.0.0.1', code: 'too-short', total: 7 });
  });
});
