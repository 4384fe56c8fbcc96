import { describe, expect, it } from 'vitest';
import { encodeOptionValue, OPTION_TYPES } from '../../src/dhcp/options.js';
import {
  checkOptionValue,
  keepValidOptions,
  OPTION_SPECS,
  type OptionValue,
} from '../../src/model/dhcp-option-values.js';
import { Reservation, Subnet } from '../../src/model/subnet.js';

const ok = (code: number, v: unknown): OptionValue => {
  const r = checkOptionValue(code, v);
  if (!r.ok) throw new Error(`expected option ${code} ${JSON.stringify(v)} to pass: ${r.message}`);
  return r.value;
};
const refused = (code: number, v: unknown): string => {
  const r = checkOptionValue(code, v);
  if (r.ok)
    throw new Error(`expected option ${code} ${JSON.stringify(v)} to be refused, got ${JSON.stringify(r.value)}`);
  return r.message;
};

const BOOLS = [19, 20, 27, 29, 30, 31, 34, 36, 39];

describe('boolean options (RFC 2132: one octet, 0 or 1)', () => {
  it('are the options the RFC makes booleans', () => {
    expect(
      Object.entries(OPTION_SPECS)
        .filter(([, s]) => s.type === 'bool')
        .map(([c]) => Number(c)),
    ).toEqual(BOOLS);
  });

  it('take the spellings ISC dhcpd and Kea take, any case, stored as 1 or 0', () => {
    for (const code of BOOLS) {
      for (const t of [true, 1, '1', 'true', 'True', 'TRUE', 'on', 'On', ' true ', [true]]) expect(ok(code, t)).toBe(1);
      for (const f of [false, 0, '0', 'false', 'False', 'off', 'OFF', ' Off ']) expect(ok(code, f)).toBe(0);
      expect(ok(code, 'hex:01')).toBe('hex:01');
      expect(ok(code, 'hex:00')).toBe('hex:00');
    }
  });

  it('refuse anything else, saying what they expect', () => {
    expect(refused(19, 2)).toBe('option 19 (ip-forwarding) is a boolean: true or false (also on/off, 1/0); got 2');
    for (const v of [2, -1, 0.5, 'yes', 'no', 't', ' ', '2', [1, 0], 'hex:02', 'hex:0101', 'hex:']) {
      expect(refused(39, v)).toMatch(/^option 39 \(tcp-keepalive-garbage\) is a boolean/);
    }
  });
});

describe('addresses', () => {
  it('option 1 must be a contiguous mask', () => {
    for (const m of ['255.255.255.0', '255.255.255.255', '255.255.128.0', '0.0.0.0', '255.255.255.252']) {
      expect(ok(1, m)).toBe(m);
    }
    expect(ok(1, ['255.255.0.0'])).toBe('255.255.0.0');
    for (const m of ['255.0.255.0', '255.255.255.1', '0.255.255.255', '10.0.0.1']) {
      expect(refused(1, m)).toMatch(/^option 1 \(subnet-mask\) is a subnet mask like 255.255.255.0/);
    }
    expect(refused(1, 'hex:ff00ff00')).toMatch(/subnet mask/);
    expect(ok(1, 'hex:FFFFFF00')).toBe('hex:ffffff00');
  });

  it('single-address options take one dotted quad', () => {
    expect(ok(28, ' 10.0.0.255 ')).toBe('10.0.0.255');
    for (const v of ['10.0.0.1,10.0.0.2', 'not-an-ip', '10.0.0', '256.0.0.1', '010.0.0.1', 167772161, [], 'hex:0a00']) {
      expect(refused(54, v)).toMatch(/^option 54 \(server-id\) is an IPv4 address; got /);
    }
  });

  it('address lists: an array or commas/spaces, stored as one string or an array', () => {
    expect(ok(3, '10.0.0.1')).toBe('10.0.0.1');
    expect(ok(6, '10.0.0.1, 10.0.0.2 10.0.0.3')).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    expect(ok(6, ['10.0.0.1', ' 10.0.0.2'])).toEqual(['10.0.0.1', '10.0.0.2']);
    expect(ok(6, 'hex:0a0000010a000002')).toBe('hex:0a0000010a000002');
    expect(refused(3, 'not-an-ip')).toMatch(/^option 3 \(router\) is a list of IPv4 addresses/);
    for (const v of ['10.0.0.1,x', ',', [], ['10.0.0.1', 5], 'hex:0a0000', 42])
      expect(refused(6, v)).toMatch(/router|dns/);
    // 64 addresses are 256 octets: more than one option holds.
    const many = Array.from({ length: 64 }, (_, i) => `10.0.1.${i}`);
    expect(ok(6, many.slice(0, 63))).toHaveLength(63);
    expect(refused(6, many)).toMatch(/dns-servers/);
  });

  it('policy filters are address pairs and static routes never have destination 0.0.0.0', () => {
    expect(ok(21, '10.0.0.0 255.0.0.0')).toEqual(['10.0.0.0', '255.0.0.0']);
    expect(refused(21, '10.0.0.0')).toMatch(/pairs of address and mask/);
    // Not a mask, but what ISC's Forge suite configures and Kea and dhcpd accept: pairs are all that is checked.
    expect(ok(21, '199.199.199.1,50.50.50.1')).toEqual(['199.199.199.1', '50.50.50.1']);
    expect(ok(33, ['10.1.0.0', '10.0.0.1'])).toEqual(['10.1.0.0', '10.0.0.1']);
    expect(refused(33, '0.0.0.0 10.0.0.1')).toMatch(/pairs of destination and router/);
    expect(refused(33, '10.1.0.0 10.0.0.1 10.2.0.0')).toMatch(/pairs of destination and router/);
  });
});

describe('integers', () => {
  it('time offset (2) is a signed 32-bit integer', () => {
    expect(ok(2, -2147483648)).toBe(-2147483648);
    expect(ok(2, '2147483647')).toBe(2147483647);
    expect(ok(2, -3600)).toBe(-3600);
    for (const v of [2147483648, -2147483649, 1.5, '1e3', '0x10', 'x', true]) {
      expect(refused(2, v)).toBe(
        `option 2 (time-offset) is an integer from -2147483648 to 2147483647; got ${JSON.stringify(v)}`,
      );
    }
  });

  it('unsigned sizes and the minimums RFC 2132 sets', () => {
    expect(ok(13, 65535)).toBe(65535);
    expect(refused(13, 65536)).toMatch(/^option 13 \(boot-size\) is an integer from 0 to 65535/);
    expect(refused(13, -1)).toMatch(/boot-size/);
    expect(ok(26, '1500')).toBe(1500);
    expect(ok(26, [9000])).toBe(9000);
    expect(refused(26, 67)).toMatch(/^option 26 \(mtu\) is an integer from 68 to 65535/);
    expect(refused(26, [1500, 9000])).toMatch(/mtu/);
    expect(refused(26, 'hex:0043')).toMatch(/mtu/); // 67 as raw bytes
    expect(ok(26, 'hex:05dc')).toBe('hex:05dc');
    expect(refused(26, 'hex:05')).toMatch(/mtu/); // one octet for a 16-bit option
    expect(refused(22, 575)).toMatch(/from 576/);
    expect(refused(57, 575)).toMatch(/from 576/);
    expect(refused(23, 0)).toMatch(/default-ttl\) is an integer from 1 to 255/);
    expect(refused(37, 256)).toMatch(/default-tcp-ttl/);
    expect(ok(51, 4294967295)).toBe(4294967295);
    expect(refused(51, 4294967296)).toMatch(/lease-time\) is an integer from 0 to 4294967295/);
    expect(ok(46, 8)).toBe(8);
    expect(refused(46, 3)).toBe('option 46 (netbios-node-type) is one of 1, 2, 4, 8; got 3');
    expect(refused(52, 4)).toMatch(/one of 1, 2, 3/);
  });

  it('16-bit lists (25 with its minimum of 68)', () => {
    expect(ok(25, '68, 296 1500')).toEqual([68, 296, 1500]);
    expect(ok(25, [1500])).toBe(1500);
    expect(refused(25, [1500, 67])).toMatch(/^option 25 \(path-mtu-plateau-table\) is a list of integers from 68/);
    expect(refused(25, [])).toMatch(/plateau/);
    expect(refused(25, 'hex:05dc00')).toMatch(/plateau/);
  });
});

describe('text', () => {
  it('1 to 255 bytes, no control characters; numbers and lists become the string the encoder sends', () => {
    expect(ok(15, 'lab.example')).toBe('lab.example');
    expect(ok(15, 'x'.repeat(255))).toHaveLength(255);
    expect(refused(15, 'x'.repeat(256))).toMatch(/^option 15 \(domain-name\) is text of 1 to 255 bytes/);
    expect(refused(15, 'é'.repeat(128))).toMatch(/domain-name/); // 256 bytes as UTF-8
    for (const v of ['a\u0000b', 'a\nb', '\u007f']) expect(refused(12, v)).toMatch(/without control characters/);
    expect(ok(17, 42)).toBe('42');
    expect(ok(17, ['a', 'b'])).toBe('a,b');
    expect(refused(17, true)).toMatch(/root-path/);
  });

  it('templates are kept as written (rendered per client) when every {{ opens a placeholder', () => {
    expect(ok(12, 'n-{{machine.name}}')).toBe('n-{{machine.name}}');
    expect(ok(3, '{{ machine.params.gateway }}')).toBe('{{ machine.params.gateway }}');
    expect(ok(19, '{{machine.params.fwd}}')).toBe('{{machine.params.fwd}}');
    expect(refused(12, 'n-{{ bad path }}')).toMatch(/template whose every '\{\{' opens a placeholder/);
    expect(refused(12, '{{machine.name')).toMatch(/template/);
    expect(refused(6, ['10.0.0.1', '{{machine.params.dns}}'])).toMatch(/a template only as a single string/);
  });
});

describe('bytes and unknown codes', () => {
  it('keep what the encoder does with them: text, a u32, a byte list, hex', () => {
    expect(ok(43, 'vendor text')).toBe('vendor text');
    expect(ok(224, 'site text')).toBe('site text');
    expect(ok(224, 7)).toBe(7);
    expect(ok(224, [1, '2', 255])).toEqual([1, 2, 255]);
    expect(ok(224, 'hex:01:02:AB')).toBe('hex:0102ab');
    expect(ok(224, 'hex:')).toBe('hex:');
    expect(refused(224, [256])).toMatch(/^option 224 is bytes/);
    expect(refused(224, -1)).toMatch(/option 224 is bytes/);
    expect(refused(224, 'hex:abc')).toBe('option 224 is \'hex:\' followed by pairs of hex digits; got "hex:abc"');
    expect(refused(224, true)).toMatch(/option 224 is bytes/);
  });

  it('domain search (119) is RFC 3397 wire form', () => {
    const wire = 'hex:03 6c 61 62 07 65 78 61 6d 70 6c 65 00 05 73 74 6f 72 65 c0 04'; // lab.example, store.example
    expect(ok(119, wire)).toBe(`hex:${wire.slice(4).replace(/ /g, '')}`);
    expect(refused(119, 'lab.example')).toMatch(/RFC 3397/);
    expect(refused(119, 'hex:036c6162')).toMatch(/RFC 3397/); // unterminated
    expect(refused(119, 'hex:c00000')).toMatch(/RFC 3397/); // pointer not backwards
    expect(refused(119, 'hex:4000')).toMatch(/RFC 3397/); // reserved label type
  });

  it('classless static routes (121) are RFC 3442 wire form', () => {
    expect(ok(121, 'hex:18 0a 01 02 0a 00 00 01 00 0a 00 00 01')).toBe('hex:180a01020a000001000a000001');
    expect(ok(121, [8, 10, 10, 0, 0, 1])).toEqual([8, 10, 10, 0, 0, 1]);
    expect(refused(121, 'hex:21 0a 00 00 00 00 0a 00 00 01')).toMatch(/RFC 3442/); // width 33
    expect(refused(121, 'hex:18 0a 01 02 0a 00')).toMatch(/RFC 3442/); // router cut short
    expect(refused(121, '10.0.0.0/8 10.0.0.1')).toMatch(/RFC 3442/);
    expect(refused(121, 5)).toMatch(/RFC 3442/);
  });
});

it("'' is kept for every option: the option is not sent (a reservation takes back a subnet's option)", () => {
  for (const code of [1, 2, 3, 12, 19, 25, 43, 119, 224]) expect(ok(code, '')).toBe('');
});

describe('what is accepted is what the encoder sends', () => {
  /** A small deterministic generator: values of every shape the schema lets through, good and bad. */
  function* samples(): Generator<unknown> {
    const strings = [
      '',
      'true',
      'False',
      'on',
      '1',
      '0',
      '2',
      '-1',
      '68',
      '1500',
      '65536',
      '4294967296',
      '10.0.0.1',
      '255.255.255.0',
      '10.0.0.1,10.0.0.2',
      '10.0.0.0 255.0.0.0',
      'lab.example',
      'hex:01',
      'hex:0a000001',
      'hex:ffffff00',
      'hex:05dc',
      'hex:00000e10',
      'x y',
      'é',
    ];
    yield* strings;
    yield* [0, 1, 2, 8, 67, 68, 576, 1500, 65535, 65536, -2147483648, 2147483647, 4294967295, -1, 0.5, true, false];
    yield* [[], [1], ['10.0.0.1'], ['10.0.0.1', '10.0.0.2'], [68, 1500], [1, 2, 300], ['a', 'b']];
  }

  it('every canonical value encodes without error, booleans as one octet, and checking it again changes nothing', () => {
    let accepted = 0;
    for (const code of [...Object.keys(OPTION_SPECS).map(Number), 224]) {
      for (const v of samples()) {
        const r = checkOptionValue(code, v);
        if (!r.ok || r.value === '') continue;
        accepted++;
        const bytes = encodeOptionValue(code, r.value);
        if (OPTION_SPECS[code]?.type === 'bool')
          expect([...bytes]).toEqual([r.value === 'hex:01' ? 1 : r.value === 'hex:00' ? 0 : r.value]);
        if (OPTION_SPECS[code]?.type !== 'bytes' && OPTION_SPECS[code]) expect(bytes.length).toBeLessThanOrEqual(255);
        expect(checkOptionValue(code, r.value)).toEqual(r);
      }
    }
    expect(accepted).toBeGreaterThan(300);
  });

  it('the table names every option src/dhcp/options.ts knows, with the same type', () => {
    const theirs = Object.fromEntries(
      Object.entries(OPTION_TYPES).map(([c, t]) => [c, { name: t.name, type: t.type }]),
    );
    const ours = Object.fromEntries(Object.entries(OPTION_SPECS).map(([c, t]) => [c, { name: t.name, type: t.type }]));
    expect(ours).toEqual(theirs);
  });
});

describe('in the subnet and reservation schemas', () => {
  const base = { name: 's', subnet: '10.0.0.0/24', activeStart: '10.0.0.10', activeEnd: '10.0.0.20' };

  it('a bad value is an issue at options.N.value naming the option', () => {
    const r = Subnet.safeParse({
      ...base,
      options: [
        { code: 3, value: '10.0.0.1' },
        { code: 19, value: 2 },
      ],
    });
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => [i.path.join('.'), i.message])).toEqual([
      ['options.1.value', 'option 19 (ip-forwarding) is a boolean: true or false (also on/off, 1/0); got 2'],
    ]);
    const res = Reservation.safeParse({
      address: '10.0.0.5',
      mac: '52:54:00:00:00:01',
      subnet: 's',
      options: [{ code: 26, value: 20 }],
    });
    expect(res.error!.issues.map((i) => i.path.join('.'))).toEqual(['options.0.value']);
  });

  it('accepted values come out canonical', () => {
    const r = Subnet.parse({
      ...base,
      options: [
        { code: 19, value: 'True' },
        { code: 20, value: false },
        { code: 26, value: '9000' },
        { code: 6, value: '10.0.0.1,10.0.0.2' },
      ],
    });
    expect(r.options).toEqual([
      { code: 19, value: 1 },
      { code: 20, value: 0 },
      { code: 26, value: 9000 },
      { code: 6, value: ['10.0.0.1', '10.0.0.2'] },
    ]);
    expect(Subnet.parse(r).options).toEqual(r.options);
  });
});

it('keepValidOptions keeps what passes (normalised) and says why each other option is left out', () => {
  const { options, refused: out } = keepValidOptions([
    { code: 19, value: 'on' },
    { code: 19, value: 2 },
    { code: 0, value: 1 },
    null,
    { code: 3, value: '10.0.0.1' },
  ]);
  expect(options).toEqual([
    { code: 19, value: 1 },
    { code: 3, value: '10.0.0.1' },
  ]);
  expect(out.map((r) => r.index)).toEqual([1, 2, 3]);
  expect(out[0]!.message).toMatch(/^option 19 \(ip-forwarding\) is a boolean/);
  expect(out[1]!.message).toBe('option code 0 is not an integer from 1 to 254');
  expect(keepValidOptions(undefined)).toEqual({ options: [], refused: [] });
});
