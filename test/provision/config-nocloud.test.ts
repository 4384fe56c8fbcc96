/**
 * cloud-init NoCloud seed files and the Talos machine config (src/provision/config-nocloud.ts, config-talos.ts),
 * and the kind dispatcher: raw is never checked, each config kind is.
 */
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/provision/config-kind.js';
import { validateCloudConfig, validateMetaData, validateNetworkConfig } from '../../src/provision/config-nocloud.js';
import { validateTalos } from '../../src/provision/config-talos.js';

describe('cloud-init user-data (#cloud-config)', () => {
  it('accepts a config with hostname, keys, files, units and commands', () => {
    const text = [
      '#cloud-config',
      'hostname: node-1',
      'ssh_authorized_keys: ["ssh-ed25519 AAAA op@x"]',
      'users: [default, {name: ops, groups: sudo}]',
      'write_files:',
      '  - path: /etc/systemd/system/plinth-booted.service',
      '    content: "[Service]\\n"',
      'runcmd:',
      '  - [systemctl, enable, --now, plinth-booted.service]',
      '',
    ].join('\n');
    expect(validateCloudConfig(text)).toEqual([]);
  });

  it('refuses a missing header, YAML errors and duplicate keys (cloud-init would skip every module)', () => {
    expect(validateCloudConfig('hostname: a\n')[0]).toMatch(/first line must be "#cloud-config"/);
    expect(validateCloudConfig('#cloud-config\nhostname: [a\n')[0]).toMatch(/^user-data: not YAML/);
    expect(validateCloudConfig('#cloud-config\nhostname: a\nhostname: b\n')[0]).toMatch(/^user-data: not YAML/);
    expect(validateCloudConfig('#cloud-config\n- a\n')).toEqual(['user-data: a YAML mapping at the top level']);
  });

  it('refuses the shapes a template gets wrong: host names, key lists, relative paths', () => {
    const text = [
      '#cloud-config',
      'hostname: "node 1"',
      'ssh_authorized_keys: ""',
      'runcmd: "reboot"',
      'users: [{groups: sudo}]',
      'write_files: [{path: etc/motd}]',
      '',
    ].join('\n');
    expect(validateCloudConfig(text)).toEqual([
      'user-data: hostname: a host name (letters, digits, dots, hyphens)',
      'user-data: ssh_authorized_keys: a list of strings',
      'user-data: runcmd: a list',
      'user-data: users[0]: "default" or a mapping with a name',
      'user-data: write_files[0].path: an absolute path',
    ]);
  });
});

describe('meta-data and network-config', () => {
  it('meta-data needs an instance-id; local-hostname must be a host name', () => {
    expect(validateMetaData('instance-id: 1111\nlocal-hostname: node-1\n')).toEqual([]);
    expect(validateMetaData('local-hostname: node-1\n')).toEqual(['meta-data: instance-id: a non-empty string']);
    expect(validateMetaData('instance-id: x\nlocal-hostname: "a_b"\n')).toEqual([
      'meta-data: local-hostname: a host name (letters, digits, dots, hyphens)',
    ]);
  });

  it('network-config: version 1 or 2, also under network:', () => {
    expect(validateNetworkConfig('version: 2\nethernets: {e: {dhcp4: true}}\n')).toEqual([]);
    expect(validateNetworkConfig('network:\n  version: 1\n  config: [{type: physical, name: eth0}]\n')).toEqual([]);
    expect(validateNetworkConfig('version: 3\n')).toEqual(['network-config: version: 1 or 2']);
    expect(validateNetworkConfig('version: 1\nconfig: [{name: eth0}]\n')).toEqual([
      'network-config: config[0]: a mapping with a type',
    ]);
    expect(validateNetworkConfig('version: 2\nethernet: {}\n')).toEqual([
      'network-config: ethernet: not a key of network config version 2',
    ]);
  });
});

describe('Talos machine config', () => {
  it('accepts one v1alpha1 document, alone or with typed documents beside it', () => {
    expect(validateTalos('version: v1alpha1\nmachine: {type: worker}\ncluster: {}\n')).toEqual([]);
    const multi =
      'version: v1alpha1\nmachine: {type: controlplane}\n---\napiVersion: v1alpha1\nkind: SideroLinkConfig\n';
    expect(validateTalos(multi)).toEqual([]);
  });

  it('refuses YAML errors, other versions, a missing machine type, and no or two v1alpha1 documents', () => {
    expect(validateTalos('version: v1alpha1\nmachine: {type: worker\n')[0]).toMatch(/^talos config: not YAML/);
    expect(validateTalos('version: v1\nmachine: {type: worker}\n')).toEqual(['talos config: version: "v1alpha1"']);
    expect(validateTalos('version: v1alpha1\nmachine: {type: master}\n')).toEqual([
      'talos config: machine.type: one of init, controlplane, worker',
    ]);
    expect(validateTalos('version: v1alpha1\n')).toEqual(['talos config: machine: a mapping (the machine section)']);
    expect(validateTalos('apiVersion: v1alpha1\nkind: X\n')).toEqual([
      'talos config: exactly one v1alpha1 document (version: v1alpha1), found 0',
    ]);
    expect(validateTalos('foo: 1\n')).toEqual([
      'talos config: a v1alpha1 config (version:) or a document with apiVersion and kind',
    ]);
  });
});

describe('template kinds', () => {
  it('raw (or no kind) is served as rendered; each config kind is validated', () => {
    expect(validateConfig(undefined, 'not json {')).toEqual([]);
    expect(validateConfig('raw', 'not json {')).toEqual([]);
    expect(validateConfig('ignition', 'not json {')[0]).toMatch(/^not JSON/);
    expect(validateConfig('cloud-config', 'x: 1\n')[0]).toMatch(/#cloud-config/);
    expect(validateConfig('meta-data', '{}')).toEqual(['meta-data: instance-id: a non-empty string']);
    expect(validateConfig('network-config', '{}')).toEqual(['network-config: version: 1 or 2']);
    expect(validateConfig('talos', '[]')[0]).toMatch(/a YAML mapping/);
  });
});
