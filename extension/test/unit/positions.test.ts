import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { codePointColumnToUtf16, splitLines } from '../../src/core/positions';

test('ASCII columns map one to one (1-based -> 0-based)', () => {
  assert.equal(codePointColumnToUtf16('w = torch.randn(1, 1)', 5), 4);
  assert.equal(codePointColumnToUtf16('w = torch.randn(1, 1)', 22), 21);
});

test('BMP non-ASCII (ŵ, 重み) is one UTF-16 unit per code point', () => {
  const line = '\u0175 = torch.randn(1, 1)  # 重み';
  assert.equal(codePointColumnToUtf16(line, 5), 4);
  assert.equal(codePointColumnToUtf16(line, 26), 25); // the 重
});

test('astral characters before a column take two UTF-16 units each', () => {
  const line = 'x = "🔥"; y = w.detach()';
  assert.equal(codePointColumnToUtf16(line, 6), 5); // the emoji itself
  assert.equal(codePointColumnToUtf16(line, 7), 7); // just after it
  assert.equal(codePointColumnToUtf16(line, 14), 14); // w.detach()
  assert.equal(codePointColumnToUtf16(line, 24), 24);
  assert.equal(line.slice(14, 24), 'w.detach()');
});

test('columns past the end clamp to the line length', () => {
  assert.equal(codePointColumnToUtf16('ab', 10), 2);
  assert.equal(codePointColumnToUtf16('', 1), 0);
});

test('splitLines counts lines like the editor', () => {
  assert.deepEqual(splitLines('a\nb\r\nc\rd'), ['a', 'b', 'c', 'd']);
  assert.deepEqual(splitLines('a\n'), ['a', '']);
});
