import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { LIMITS, safeHttpUrl, validatePayload } from '../../src/core/payload';
import { diag, loc, payload } from './fixtures';

function ok(raw: unknown) {
  const r = validatePayload(raw);
  assert.equal(r.ok, true, r.ok ? '' : r.error);
  return r as Extract<typeof r, { ok: true }>;
}

function refused(raw: unknown): string {
  const r = validatePayload(raw);
  assert.equal(r.ok, false);
  return (r as Extract<typeof r, { ok: false }>).error;
}

test('a schema-valid payload maps to camelCase objects', () => {
  const raw = payload(2, [
    diag({
      location: loc(2, 9, 5, 22, 'w = torch.randn(1, 1)'),
      fix: { title: 'Create w with requires_grad=True', applicability: 'safe', edits: [{ location: loc(2, 9, 21, 21, 'w = torch.randn(1, 1)'), new_text: ', requires_grad=True' }] },
      evidence: { grad_is_none: true },
    }),
  ]);
  const { payload: p, warnings } = ok(raw);
  assert.deepEqual(warnings, []);
  assert.equal(p.executionCount, 2);
  assert.equal(p.toolVersion, '0.1.0');
  assert.equal(p.diagnostics.length, 1);
  const d = p.diagnostics[0];
  assert.equal(d.code, 'GW001');
  assert.equal(d.url, 'https://gradwatch.example/rules/GW001');
  assert.deepEqual(d.location, { cell: 2, path: null, line: 9, column: 5, endLine: 9, endColumn: 22, source: 'w = torch.randn(1, 1)' });
  assert.deepEqual(d.fix?.edits[0], { location: { cell: 2, path: null, line: 9, column: 21, endLine: 9, endColumn: 21, source: 'w = torch.randn(1, 1)' }, newText: ', requires_grad=True' });
});

test('refuses wrong versions, tools and envelopes', () => {
  assert.match(refused({ ...payload(1, []), version: 2 }), /unsupported payload version 2/);
  assert.match(refused({ ...payload(1, []), version: '1' }), /unsupported payload version/);
  assert.match(refused({ ...payload(1, []), tool: { name: 'other', version: '1' } }), /tool.name/);
  assert.match(refused(null), /not an object/);
  assert.match(refused([payload(1, [])]), /not an object/);
  assert.match(refused('{"version": 1}'), /not an object/);
  assert.match(refused({ ...payload(1, []), cell: { execution_count: 1.5 } }), /execution_count is not an integer/);
  assert.match(refused({ ...payload(1, []), diagnostics: {} }), /diagnostics is not an array/);
  assert.match(refused({ ...payload(1, []), tool: { name: 'gradwatch', version: 'x'.repeat(65) } }), /longer than 64/);
});

test('refuses arrays above the schema limit and caps what is shown', () => {
  const huge = Array.from({ length: LIMITS.maxDiagnosticsInPayload + 1 }, () => diag());
  assert.match(refused(payload(1, huge)), /more than 1000 items/);
  const many = Array.from({ length: 600 }, (_, i) => diag({ message: `m${i}` }));
  const r = ok(payload(1, many));
  assert.equal(r.payload.diagnostics.length, 500);
  assert.equal(r.payload.diagnostics[499].message, 'm499');
  assert.deepEqual(r.warnings, ['only the first 500 of 600 diagnostics are shown']);
});

test('drops malformed diagnostics one by one, keeping the good ones', () => {
  const r = ok(
    payload(3, [
      diag({ message: 42 }),
      diag({ code: 'GW1' }),
      diag({ code: '<b>GW001</b>' }),
      diag({ severity: 'fatal' }),
      diag({ message: 'x'.repeat(2001) }),
      diag({ location: loc(3, 0, 1, 2, '') }),
      diag({ location: loc(3, 5, 9, 2, 'abc') }),
      diag({ related: Array.from({ length: 101 }, () => ({ location: loc(3, 1, 1, 2, 'a'), message: 'r' })) }),
      diag({ fix: { title: 't', applicability: 'maybe', edits: [] } }),
      'not an object',
      diag({ message: 'the good one' }),
    ]),
  );
  assert.deepEqual(r.payload.diagnostics.map((d) => d.message), ['the good one']);
  assert.deepEqual(r.warnings, [
    'diagnostics[0] dropped: message is not a string',
    'diagnostics[1] dropped: code does not look like GW000',
    'diagnostics[2] dropped: code is longer than 5 characters',
    'diagnostics[3] dropped: severity is not error, warning or info',
    'diagnostics[4] dropped: message is longer than 2000 characters',
    'diagnostics[5] dropped: location.line is out of range',
    'diagnostics[6] dropped: location ends before it starts',
    'diagnostics[7] dropped: related has more than 100 items',
    'diagnostics[8] dropped: fix.applicability is not safe, unsafe or display-only',
    'diagnostics[9] dropped: not an object',
  ]);
});

test('only http(s) documentation links survive', () => {
  const r = ok(
    payload(1, [
      diag({ url: 'javascript:alert(1)' }),
      diag({ url: 'command:workbench.action.terminal.new' }),
      diag({ url: 'file:///etc/passwd' }),
      diag({ url: 'https://docs.example/GW001' }),
      diag({ url: 'HTTP://docs.example/GW002' }),
    ]),
  );
  assert.deepEqual(r.payload.diagnostics.map((d) => d.url), [null, null, null, 'https://docs.example/GW001', 'HTTP://docs.example/GW002']);
  assert.equal(r.warnings.length, 3);
  assert.equal(safeHttpUrl('https://'), null);
  assert.equal(safeHttpUrl(' https://x.example'), null);
  assert.equal(safeHttpUrl(42), null);
});

test('HTML in messages is kept verbatim as text (the views escape it)', () => {
  const message = '<img src=x onerror="alert(1)"> [run](command:evil) **bold**';
  const r = ok(payload(1, [diag({ message })]));
  assert.equal(r.payload.diagnostics[0].message, message);
});

test('string limits count characters (code points), as the schema and the kernel do', () => {
  // issue 11, item 7: 2,000 emoji are 2,000 characters but 4,000 UTF-16 units
  const astral = '\u{1F525}'.repeat(LIMITS.maxMessage);
  const fits = ok(payload(1, [diag({ message: astral })]));
  assert.equal(fits.payload.diagnostics.length, 1);
  const over = ok(payload(1, [diag({ message: astral + 'x' })]));
  assert.equal(over.payload.diagnostics.length, 0);
  assert.match(over.warnings[0], /message is longer than 2000 characters/);
  const cut = 'd'.repeat(LIMITS.maxSource - 1) + '\u2026';
  assert.equal(ok(payload(1, [diag({ location: loc(1, 1, 1, 2, cut) })])).payload.diagnostics.length, 1);
});

test('the optional help line is kept as text; a malformed one drops its diagnostic', () => {
  const r = ok(payload(1, [diag({ help: 'why, and what to do' }), diag({}), diag({ help: 42 }), diag({ help: 'h'.repeat(2001) })]));
  assert.deepEqual(r.payload.diagnostics.map((d) => d.help), ['why, and what to do', null]);
  assert.deepEqual(r.warnings, ['diagnostics[2] dropped: help is not a string', 'diagnostics[3] dropped: help is longer than 2000 characters']);
});
