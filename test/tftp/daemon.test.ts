/** The daemon's TFTP service: uploaded files and per-machine rendered files, and every fetch in the boot timeline. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { tftpGet } from './client.js';

let d: TestDaemon;
let port: number;
beforeAll(async () => {
  d = await startTestDaemon({ tftp: true, tftpPort: 0 });
  port = (await d.api('GET', '/api/v1/info')).body.listeners.tftp.port;
});
afterAll(async () => {
  await d.stop();
});

describe('TFTP in the daemon', () => {
  it('serves uploaded files and the machine files its bootenv renders, recorded in its boot timeline', async () => {
    const up = await fetch(`${d.url}/api/v1/files/lab/pxelinux.cfg`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${d.token}` },
      body: 'uploaded\n',
    });
    expect(up.status).toBe(201);
    await d.api('POST', '/api/v1/bootenvs', {
      name: 'tftp-env',
      templates: [
        {
          name: 'grub',
          path: 'grub/grub.cfg',
          contents: 'set hostname={{ machine.name }}\nset http={{ server.httpUrl }}\n',
        },
      ],
    });
    const m = await d.api('POST', '/api/v1/machines', {
      name: 'tftp-1',
      macs: ['52:54:00:7f:00:01'],
      bootEnv: 'tftp-env',
      address: '127.0.0.1',
    });
    expect(m.status).toBe(201);

    const file = await tftpGet(port, 'lab/pxelinux.cfg');
    expect(file.data.toString()).toBe('uploaded\n');
    const rendered = await tftpGet(port, `machines/${m.body.uuid}/grub/grub.cfg`);
    expect(rendered.error).toBeUndefined();
    expect(rendered.data.toString()).toBe(`set hostname=tftp-1\nset http=http://127.0.0.1:${d.daemon.httpPort}\n`);
    const missing = await tftpGet(port, `machines/${m.body.uuid}/nope.cfg`);
    expect(missing.error?.code).toBe(1);

    // The timeline records are written in the background of each transfer.
    await expect
      .poll(async () =>
        (await d.api('GET', `/api/v1/machines/${m.body.uuid}/boots`)).body[0]?.events.map(
          (e: { kind: string; detail: string }) => `${e.kind} ${e.detail}`,
        ),
      )
      .toEqual(
        expect.arrayContaining([
          'tftp RRQ lab/pxelinux.cfg -> 9 bytes',
          expect.stringMatching(/^render grub\/grub.cfg of bootenv tftp-env over TFTP$/),
          expect.stringMatching(/^tftp RRQ machines\/.*\/nope.cfg -> not-found$/),
        ]),
      );
  });

  it('a firmware quirk chosen at DHCP time caps the blksize its TFTP client is granted', async () => {
    const mac = '52:54:00:7f:00:02';
    const before = await tftpGet(port, 'lab/pxelinux.cfg', { options: [['blksize', '1468']] });
    expect(before.oack).toEqual([['blksize', '1468']]);
    // What the DHCP server hands the boot sessions for a client matched by a blksize quirk, with its address.
    d.daemon.sessions.record({
      mac,
      mode: 'server',
      address: '127.0.0.1',
      bootEnv: 'local',
      filename: 'ipxe.efi',
      reason: 'quirk',
      blksize: { value: 1024, why: 'quirk' },
    });
    const after = await tftpGet(port, 'lab/pxelinux.cfg', { options: [['blksize', '1468']] });
    expect(after.oack).toEqual([['blksize', '1024']]);
    expect(after.data.toString()).toBe('uploaded\n');
  });
});
