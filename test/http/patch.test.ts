import { describe, expect, it } from 'vitest';
import { jsonPatch, mergePatch } from '../../src/http/patch.js';
import type { HttpProblem } from '../../src/http/problem.js';

describe('JSON Merge Patch (RFC 7396 appendix A)', () => {
  const cases: [unknown, unknown, unknown][] = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [
      ['a', 'b'],
      ['c', 'd'],
      ['c', 'd'],
    ],
    [{ a: 'b' }, ['c'], ['c']],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  it.each(cases)('%j + %j', (t, p, want) => {
    expect(mergePatch(t, p)).toEqual(want);
  });
});

describe('JSON Patch (RFC 6902 appendix A)', () => {
  it('add, remove, replace, move, copy, test', () => {
    expect(jsonPatch({ foo: 'bar' }, [{ op: 'add', path: '/baz', value: 'qux' }])).toEqual({ foo: 'bar', baz: 'qux' });
    expect(jsonPatch({ foo: ['bar', 'baz'] }, [{ op: 'add', path: '/foo/1', value: 'qux' }])).toEqual({
      foo: ['bar', 'qux', 'baz'],
    });
    expect(jsonPatch({ baz: 'qux', foo: 'bar' }, [{ op: 'remove', path: '/baz' }])).toEqual({ foo: 'bar' });
    expect(jsonPatch({ foo: ['bar', 'qux', 'baz'] }, [{ op: 'remove', path: '/foo/1' }])).toEqual({
      foo: ['bar', 'baz'],
    });
    expect(jsonPatch({ baz: 'qux', foo: 'bar' }, [{ op: 'replace', path: '/baz', value: 'boo' }])).toEqual({
      baz: 'boo',
      foo: 'bar',
    });
    expect(
      jsonPatch({ foo: { bar: 'baz', waldo: 'fred' }, qux: { corge: 'grault' } }, [
        { op: 'move', from: '/foo/waldo', path: '/qux/thud' },
      ]),
    ).toEqual({ foo: { bar: 'baz' }, qux: { corge: 'grault', thud: 'fred' } });
    expect(
      jsonPatch({ foo: ['all', 'grass', 'cows', 'eat'] }, [{ op: 'move', from: '/foo/1', path: '/foo/3' }]),
    ).toEqual({
      foo: ['all', 'cows', 'eat', 'grass'],
    });
    expect(
      jsonPatch({ baz: 'qux', foo: ['a', 2, 'c'] }, [
        { op: 'test', path: '/baz', value: 'qux' },
        { op: 'test', path: '/foo/1', value: 2 },
      ]),
    ).toEqual({ baz: 'qux', foo: ['a', 2, 'c'] });
    expect(jsonPatch({ foo: 'bar' }, [{ op: 'add', path: '/child', value: { grandchild: {} } }])).toEqual({
      foo: 'bar',
      child: { grandchild: {} },
    });
    expect(jsonPatch({ foo: ['bar'] }, [{ op: 'add', path: '/foo/-', value: ['abc', 'def'] }])).toEqual({
      foo: ['bar', ['abc', 'def']],
    });
    expect(
      jsonPatch({ '/': 9, '~1': 10 }, [
        { op: 'test', path: '/~01', value: 10 },
        { op: 'copy', from: '/~1', path: '/x' },
      ]),
    ).toEqual({
      '/': 9,
      '~1': 10,
      x: 9,
    });
  });

  it('errors: missing target is 409, malformed op is 400; the input is never modified', () => {
    const doc = { foo: 'bar' };
    const status = (patch: unknown) => {
      try {
        jsonPatch(doc, patch);
        return 0;
      } catch (e) {
        return (e as HttpProblem).status;
      }
    };
    expect(status([{ op: 'add', path: '/baz/bat', value: 'qux' }])).toBe(409);
    expect(status([{ op: 'test', path: '/foo', value: 'nope' }])).toBe(409);
    expect(status([{ op: 'remove', path: '/nope' }])).toBe(409);
    expect(status([{ op: 'frob', path: '/foo' }])).toBe(400);
    expect(status([{ op: 'add', path: 'foo', value: 1 }])).toBe(400);
    expect(status({ op: 'add' })).toBe(400);
    expect(
      status([
        { op: 'add', path: '/x', value: 1 },
        { op: 'test', path: '/foo', value: 'no' },
      ]),
    ).toBe(409);
    expect(doc).toEqual({ foo: 'bar' });
  });
});
