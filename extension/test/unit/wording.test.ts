// issue 13 section 2: one vocabulary with the kernel's report (kernel_ext/gradwatch/report.py).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { validateLocation } from '../../src/core/payload';
import { describeLocation, diagnosticText, fixKind, fixLine, quickFixTitle, statusTooltip, summaryLine } from '../../src/core/wording';
import { loc } from './fixtures';

test('locations read "cell [2], line 9, col 5", a file by its path', () => {
  assert.equal(describeLocation(validateLocation(loc(2, 9, 5, 22, 'w = torch.randn(1, 1)'))), 'cell [2], line 9, col 5');
  const file = { ...loc(null, 5, 9, 26, '    w = torch.randn(3, 1)'), path: 'helpers.py' };
  assert.equal(describeLocation(validateLocation(file)), 'helpers.py, line 5, col 9');
  assert.equal(describeLocation(validateLocation(loc(null, 3, 1, 2, 'x'))), 'this cell, line 3, col 1');
});

test('the summary line is the kernel report\'s', () => {
  assert.equal(summaryLine(0), 'gradwatch: no problems found');
  assert.equal(summaryLine(1), 'gradwatch: 1 problem(s)');
  assert.equal(summaryLine(3), 'gradwatch: 3 problem(s)');
});

test('fixes are called a safe fix, a fix that changes behaviour, or a suggestion', () => {
  assert.deepEqual(['safe', 'unsafe', 'display-only'].map((a) => fixKind(a as never)), ['safe fix', 'fix that changes behaviour', 'suggestion']);
  assert.equal(fixLine('safe', 'Add `requires_grad=True`'), 'Safe fix: Add `requires_grad=True`');
  assert.equal(fixLine('unsafe', 'Use `y_pred` instead'), 'Fix that changes behaviour: Use `y_pred` instead');
  assert.equal(fixLine('display-only', 'Move the model to the GPU'), 'Suggestion: Move the model to the GPU');
});

test('quick fix titles: a safe fix is its title, an unsafe one says it changes behaviour', () => {
  assert.equal(quickFixTitle('safe', 'Add `requires_grad=True`'), 'Add `requires_grad=True`');
  assert.equal(quickFixTitle('unsafe', 'Use `y_pred` instead'), 'Use `y_pred` instead (fix that changes behaviour)');
});

test('no payload jargon in any of it', () => {
  const words = [fixKind('safe'), fixKind('unsafe'), fixKind('display-only'), quickFixTitle('unsafe', 't'), fixLine('display-only', 't'), summaryLine(0), summaryLine(2)];
  for (const w of words) assert.doesNotMatch(w, /display-only|unsafe|applicability/, w);
});

test('a diagnostic reads as the short message, then its help line', () => {
  assert.equal(diagnosticText('`w` never receives a gradient', 'Create it with `requires_grad=True`.'), '`w` never receives a gradient\nCreate it with `requires_grad=True`.');
  assert.equal(diagnosticText('`w` never receives a gradient', null), '`w` never receives a gradient');
});

test('the status bar tooltip counts in the same words', () => {
  assert.equal(statusTooltip(0, 0, 0), 'gradwatch in this notebook: no problems found');
  assert.equal(statusTooltip(2, 1, 0), 'gradwatch in this notebook: 3 problem(s): 2 error(s), 1 warning(s), 0 info');
});
