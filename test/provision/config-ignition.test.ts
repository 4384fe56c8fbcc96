/**
 * Ignition 3.x structural validation (src/provision/config-ignition.ts): what a template can get wrong is refused
 * with the JSON path that is wrong; a valid config (the shipped flatcar one, a realistic one) passes.
 */
import { describe, expect, it } from 'vitest';
import { validateIgnition } from '../../src/provision/config-ignition.js';

const cfg = (doc: unknown) => JSON.stringify(doc);
const valid = {
  ignition: { version: '3.3.0' },
  passwd: { users: [{ name: 'core', sshAuthorizedKeys: ['ssh-ed25519 AAAA op@x'] }] },
  storage: {
    files: [{ path: '/etc/hostname', mode: 420, contents: { source: 'data:,node-1' } }],
    directories: [{ path: '/opt/plinth' }],
    links: [{ path: '/etc/localtime', target: '/usr/share/zoneinfo/UTC' }],
  },
  systemd: {
    units: [
      { name: 'plinth-booted.service', enabled: true, contents: '[Service]\nExecStart=/bin/true\n' },
      { name: 'docker.socket', dropins: [{ name: '10-plinth.conf', contents: '' }] },
    ],
  },
  kernelArguments: { shouldExist: ['console=ttyS0'] },
};

describe('Ignition validation', () => {
  it('accepts a valid 3.3.0 config, and 3.0.0 without the later keys', () => {
    expect(validateIgnition(cfg(valid))).toEqual([]);
    expect(validateIgnition(cfg({ ignition: { version: '3.0.0' }, storage: { files: [] } }))).toEqual([]);
  });

  it('refuses what is not an Ignition 3.x config at all', () => {
    expect(validateIgnition('{"ignition": {"version": "3.3.0"},}')[0]).toMatch(/^not JSON/);
    expect(validateIgnition('[]')).toEqual(['$: an Ignition config is a JSON object']);
    expect(validateIgnition(cfg({ storage: {} }))[0]).toMatch(/^\$\.ignition\.version: missing/);
    // Spec 2.x (Ignition 0.x) and a version that does not exist.
    expect(validateIgnition(cfg({ ignition: { version: '2.3.0' } }))[0]).toMatch(/"2.3.0" is not an Ignition 3.x/);
    expect(validateIgnition(cfg({ ignition: { version: 3.3 } }))[0]).toMatch(/version: missing/);
  });

  it('refuses unknown top-level keys (a typo would silently drop a section) and keys newer than the version', () => {
    expect(validateIgnition(cfg({ ignition: { version: '3.3.0' }, sytemd: {} }))).toEqual([
      '$.sytemd: not a key of Ignition 3.3.0 (one of ignition, storage, systemd, passwd, kernelArguments)',
    ]);
    expect(validateIgnition(cfg({ ignition: { version: '3.2.0' }, kernelArguments: {} }))).toEqual([
      '$.kernelArguments: needs Ignition spec 3.3.0 or later, the config is 3.2.0',
    ]);
    expect(validateIgnition(cfg({ ignition: { version: '3.1.0' }, storage: { luks: [] } }))).toEqual([
      '$.storage.luks: needs Ignition spec 3.2.0 or later',
    ]);
    expect(validateIgnition(cfg({ ignition: { version: '3.3.0', verison: 1 } }))).toEqual([
      '$.ignition.verison: not a key of the ignition section',
    ]);
  });

  it('storage: absolute, unique paths; integer modes; fetchable sources', () => {
    const doc = structuredClone(valid);
    doc.storage.files.push(
      { path: 'etc/motd', mode: 420, contents: { source: 'data:,hi' } },
      { path: '/etc/hostname', mode: 420, contents: { source: 'data:,again' } },
      { path: '/etc/issue', mode: '0644' as unknown as number, contents: { source: 'file:///etc/passwd' } },
    );
    expect(validateIgnition(cfg(doc))).toEqual([
      '$.storage.files[1].path: an absolute path',
      '$.storage.files[2].path: "/etc/hostname" is already defined at $.storage.files[0]',
      '$.storage.files[3].mode: an integer (decimal, e.g. 420 for 0644)',
      '$.storage.files[3].contents.source: "file:///etc/passwd" is not a data, http(s), tftp, s3, gs or arn URL',
    ]);
    const dirClash = cfg({
      ignition: { version: '3.3.0' },
      storage: { directories: [{ path: '/etc/hostname' }], files: [{ path: '/etc/hostname' }] },
    });
    expect(validateIgnition(dirClash)).toEqual([
      '$.storage.directories[0].path: "/etc/hostname" is already defined at $.storage.files[0]',
    ]);
  });

  it('systemd: unit names with a type suffix, once each; drop-ins end in .conf', () => {
    const units = [
      { name: 'plinth-booted' },
      { name: 'a.service' },
      { name: 'a.service' },
      { name: '../x.service' },
      { name: 'b.timer', enabled: 'yes', dropins: [{ name: 'override' }] },
    ];
    expect(validateIgnition(cfg({ ignition: { version: '3.3.0' }, systemd: { units } }))).toEqual([
      '$.systemd.units[0].name: a unit name with a unit type suffix (e.g. plinth-booted.service)',
      '$.systemd.units[2].name: "a.service" is defined twice',
      '$.systemd.units[3].name: a unit name with a unit type suffix (e.g. plinth-booted.service)',
      '$.systemd.units[4].enabled: true or false',
      '$.systemd.units[4].dropins[0].name: a file name ending in .conf',
    ]);
    expect(validateIgnition(cfg({ ignition: { version: '3.3.0' }, systemd: { units: {} } }))).toEqual([
      '$.systemd.units: a list',
    ]);
  });

  it('passwd: users have names; keys are a list of strings', () => {
    const passwd = { users: [{ name: '' }, { name: 'core', sshAuthorizedKeys: 'ssh-ed25519 AAAA' }] };
    expect(validateIgnition(cfg({ ignition: { version: '3.3.0' }, passwd }))).toEqual([
      '$.passwd.users[0].name: required',
      '$.passwd.users[1].sshAuthorizedKeys: a list of strings',
    ]);
  });
});
