import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { renderMachineFile } from '../../src/boot/render.js';
import { BootEnv } from '../../src/model/bootenv.js';
import type { Machine } from '../../src/model/machine.js';

const dir = path.resolve(import.meta.dirname, '../../bootenvs');
const load = (name: string) => BootEnv.parse(YAML.parse(readFileSync(path.join(dir, `${name}.yaml`), 'utf8')));
const machine: Machine = {
  uuid: '11111111-2222-4333-8444-555555555555',
  name: 'node 1',
  macs: ['52:54:00:00:00:01'],
  profiles: [],
  params: {},
  description: '',
  locked: false,
};
const server = { address: '10.0.0.1', httpPort: 8091 };
const render = (be: BootEnv, file: string, params: Record<string, unknown> = {}) =>
  renderMachineFile({ machine, bootEnv: be, params, server, token: 'tok', templates: {} }, file);

describe('shipped bootenvs', () => {
  it('all parse', () => {
    const names = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
    expect(names.sort()).toEqual(['discovery.yaml', 'flatcar.yaml', 'linuxkit.yaml', 'local.yaml', 'talos.yaml']);
    for (const n of names) expect(() => load(n.replace('.yaml', ''))).not.toThrow();
  });

  it('flatcar: PXE image facts and an Ignition config rendered for the machine', async () => {
    const be = load('flatcar');
    const ipxe = await render(be, 'boot.ipxe', { 'ssh/authorized-keys': ['ssh-ed25519 AAAA op@x'] });
    expect(ipxe).toContain('initrd=flatcar_production_pxe_image.cpio.gz flatcar.first_boot=1');
    expect(ipxe).toContain(`ignition.config.url=http://10.0.0.1:8091/machines/${machine.uuid}/ignition.json`);
    const ign = JSON.parse((await render(be, 'ignition.json', { 'ssh/authorized-keys': ['ssh-ed25519 AAAA op@x'] }))!);
    expect(ign.ignition.version).toBe('3.3.0');
    expect(ign.passwd.users[0].sshAuthorizedKeys).toEqual(['ssh-ed25519 AAAA op@x']);
    expect(ign.storage.files[0].contents.source).toBe('data:,node%201');
  });

  it('talos: metal command line; the config param is required and served as the machine config', async () => {
    const be = load('talos');
    await expect(render(be, 'boot.ipxe')).rejects.toThrow(
      "needs param 'talos/config', which is not set for machine 'node 1'",
    );
    const ipxe = await render(be, 'boot.ipxe', { 'talos/config': 'version: v1alpha1\n' });
    expect(ipxe).toContain('talos.platform=metal slab_nomerge pti=on');
    expect(ipxe).toContain(`talos.config=http://10.0.0.1:8091/machines/${machine.uuid}/talos.yaml`);
    expect(await render(be, 'talos.yaml', { 'talos/config': 'version: v1alpha1\n' })).toBe('version: v1alpha1\n');
  });

  it('linuxkit: kernel, initrd and the build cmdline', async () => {
    const ipxe = await render(load('linuxkit'), 'boot.ipxe', { 'linuxkit/cmdline': 'console=ttyS0 page_poison=1' });
    expect(ipxe).toMatch(
      /^kernel http:\/\/10\.0\.0\.1:8091\/files\/linuxkit\/kernel initrd=initrd\.img console=ttyS0 page_poison=1/m,
    );
    expect(ipxe).toContain('initrd http://10.0.0.1:8091/files/linuxkit/initrd.img');
  });

  it('local: leaves network boot', async () => {
    expect(await render(load('local'), 'boot.ipxe')).toContain('exit');
  });
});
