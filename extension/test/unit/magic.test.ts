import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { ignoredCodes, isGradwatchMagic, withIgnoredCode } from '../../src/core/magic';

test('recognises the %%gradwatch line only', () => {
  assert.equal(isGradwatchMagic('%%gradwatch'), true);
  assert.equal(isGradwatchMagic('%%gradwatch --ignore GW001'), true);
  assert.equal(isGradwatchMagic('%%gradwatcher'), false);
  assert.equal(isGradwatchMagic('# %%gradwatch'), false);
});

test('reads --ignore lists in both spellings', () => {
  assert.deepEqual([...ignoredCodes('%%gradwatch --ignore GW001,GW002')], ['GW001', 'GW002']);
  assert.deepEqual([...ignoredCodes('%%gradwatch --ignore=gw003 --ignore GW004')], ['GW003', 'GW004']);
  assert.deepEqual([...ignoredCodes('%%time --ignore GW001')], []);
});

test('adds an --ignore option to a bare magic line', () => {
  assert.equal(withIgnoredCode('%%gradwatch', 'GW001'), '%%gradwatch --ignore GW001');
  assert.equal(withIgnoredCode('%%gradwatch   ', 'GW002'), '%%gradwatch --ignore GW002');
});

test('merges into an existing --ignore list, keeping other options', () => {
  assert.equal(withIgnoredCode('%%gradwatch --ignore GW001 --steps 5', 'GW002'), '%%gradwatch --ignore GW001,GW002 --steps 5');
  assert.equal(withIgnoredCode('%%gradwatch --ignore=GW003', 'GW001'), '%%gradwatch --ignore=GW003,GW001');
});

test('no edit when already ignored or not a gradwatch cell', () => {
  assert.equal(withIgnoredCode('%%gradwatch --ignore GW001', 'GW001'), null);
  assert.equal(withIgnoredCode('import torch', 'GW001'), null);
});
