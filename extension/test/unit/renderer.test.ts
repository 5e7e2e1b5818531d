// The renderer against a minimal fake DOM that refuses innerHTML: payload text must
// arrive as textContent and only http(s) links may become hrefs.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { diag, loc, payload } from './fixtures';

class FakeElement {
  children: FakeElement[] = [];
  textContent = '';
  className = '';
  href?: string;
  title = '';
  listeners: Record<string, (e: { preventDefault(): void }) => void> = {};
  constructor(readonly tag: string) {}
  set innerHTML(_v: string) {
    throw new Error('innerHTML must not be used');
  }
  append(...nodes: FakeElement[]) {
    this.children.push(...nodes);
  }
  replaceChildren(...nodes: FakeElement[]) {
    this.children = nodes;
  }
  addEventListener(type: string, fn: (e: { preventDefault(): void }) => void) {
    this.listeners[type] = fn;
  }
  all(tag: string): FakeElement[] {
    return this.children.flatMap((c) => [...(c.tag === tag ? [c] : []), ...c.all(tag)]);
  }
}

(globalThis as Record<string, unknown>).document = { createElement: (tag: string) => new FakeElement(tag) };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { activate, MAX_ROWS } = require('../../src/renderer/index') as typeof import('../../src/renderer/index');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { LIMITS } = require('../../src/core/payload') as typeof import('../../src/core/payload');

function renderRaw(raw: unknown, messages: unknown[] = [], bytes?: number, messaging = true) {
  const ctx = (messaging ? { postMessage: (m: unknown) => messages.push(m) } : {}) as never;
  const renderer = (activate as (c: unknown) => { renderOutputItem(i: unknown, e: unknown): void })(ctx);
  const root = new FakeElement('div');
  const data = () => new Uint8Array(bytes ?? JSON.stringify(raw ?? null).length);
  renderer.renderOutputItem({ json: () => raw, data }, root);
  return root;
}

test('renders one row per diagnostic with text-only cells', () => {
  const hostile = '<img src=x onerror="alert(1)"> [x](command:evil)';
  const root = renderRaw(payload(2, [diag({ message: hostile, location: loc(2, 9, 5, 22, 'w = torch.randn(1, 1)') }), diag({ code: 'GW002', name: 'graph-cut', severity: 'warning', url: 'javascript:alert(1)' })]));
  const rows = root.all('tr');
  assert.equal(rows.length, 3); // header + 2
  const cells = rows[1].all('td');
  assert.deepEqual(cells.map((c) => c.textContent), ['error', '', hostile, '']);
  const [docLink, reveal] = rows[1].all('a');
  assert.equal(docLink.href, 'https://gradwatch.example/rules/GW001');
  assert.equal(docLink.textContent, 'GW001');
  assert.equal(reveal.textContent, 'cell [2], line 9, col 5');
  assert.equal(reveal.href, undefined);
  // The javascript: URL gives no href: the code still opens the bundled page through the extension.
  const [bundledOnly] = rows[2].all('a');
  assert.equal(bundledOnly.href, undefined);
  assert.equal(bundledOnly.textContent, 'GW002');
  assert.equal(root.all('div')[1].textContent, 'gradwatch: 2 problem(s)');
});

test('the reveal link posts the location back in wire shape', () => {
  const messages: unknown[] = [];
  const root = renderRaw(payload(4, [diag({ location: loc(4, 29, 23, 38, '    detached_y_pred = y_pred.detach()') })]), messages);
  const reveal = root.all('a').find((a) => a.className === 'reveal')!;
  let prevented = false;
  reveal.listeners.click({ preventDefault: () => (prevented = true) });
  assert.equal(prevented, true);
  assert.deepEqual(messages, [{ type: 'reveal', executionCount: 4, location: { cell: 4, path: null, line: 29, column: 23, end_line: 29, end_column: 38, source: '    detached_y_pred = y_pred.detach()' } }]);
});

test('malformed payloads render a one-line notice, no table', () => {
  const root = renderRaw({ version: 99 });
  assert.equal(root.all('table').length, 0);
  assert.equal(root.all('div')[1].textContent, 'gradwatch: output not shown (unsupported payload version 99)');
  const empty = renderRaw(payload(3, []));
  assert.equal(empty.all('div')[1].textContent, 'gradwatch: no problems found');
});

// issue 11, item 16: the renderer has caps of its own
test('an output bigger than a payload may be is not parsed at all', () => {
  let parsed = false;
  const ctx = { postMessage: () => undefined } as never;
  const renderer = (activate as (c: unknown) => { renderOutputItem(i: unknown, e: unknown): void })(ctx);
  const root = new FakeElement('div');
  const item = { json: () => ((parsed = true), payload(1, [])), data: () => new Uint8Array(LIMITS.maxPayloadBytes + 1) };
  renderer.renderOutputItem(item, root);
  assert.equal(parsed, false);
  assert.equal(root.all('table').length, 0);
  assert.match(root.all('div')[1].textContent, /^gradwatch: output not shown \(8388609 bytes, more than the 8388608/);
});

test('at most MAX_ROWS rows are drawn; the rest are counted', () => {
  const many = Array.from({ length: 450 }, (_, i) => diag({ message: `m${i}` }));
  const root = renderRaw(payload(1, many));
  assert.equal(root.all('tr').length, MAX_ROWS + 1);
  const notes = root.all('div').map((d) => d.textContent);
  assert.ok(notes.includes(`${450 - MAX_ROWS} more not shown here`), notes.join('|'));
});

// issue 13 section 2: the kernel's words, no payload jargon, the help line under the message
test('fixes and help read as the kernel report words them', () => {
  const fix = (applicability: string) => ({ title: 'Use `y_pred` instead', applicability, edits: [] });
  const root = renderRaw(
    payload(4, [
      diag({ message: 'short', help: 'why, and what to do', fix: { ...fix('safe'), title: 'Add `requires_grad=True`' } }),
      diag({ fix: fix('unsafe') }),
      diag({ fix: fix('display-only') }),
    ]),
  );
  const notes = root.all('div').filter((d) => d.className === 'help' || d.className === 'fix').map((d) => d.textContent);
  assert.deepEqual(notes, [
    'why, and what to do',
    'Safe fix: Add `requires_grad=True`',
    'Fix that changes behaviour: Use `y_pred` instead',
    'Suggestion: Use `y_pred` instead',
  ]);
  const everything = JSON.stringify(root);
  assert.doesNotMatch(everything, /display-only|unsafe/);
});

// issue 13 section 6: the code link opens the rule page bundled with the extension (offline)
test('a code link asks the extension for the bundled page; without messaging it is a plain link', () => {
  const messages: unknown[] = [];
  const root = renderRaw(payload(2, [diag(), diag({ code: 'GW002', name: 'graph-cut', url: 'javascript:alert(1)' })]), messages);
  const [gw001, gw002] = root.all('a').filter((a) => a.className === 'docs');
  let prevented = 0;
  gw001.listeners.click({ preventDefault: () => prevented++ });
  gw002.listeners.click({ preventDefault: () => prevented++ });
  assert.equal(prevented, 2);
  assert.deepEqual(messages, [
    { type: 'docs', code: 'GW001', url: 'https://gradwatch.example/rules/GW001' },
    { type: 'docs', code: 'GW002', url: null },
  ]);
  const plain = renderRaw(payload(2, [diag(), diag({ code: 'GW002', name: 'graph-cut', url: 'javascript:alert(1)' })]), [], undefined, false);
  const links = plain.all('a');
  assert.deepEqual(links.map((a) => [a.textContent, a.href, Object.keys(a.listeners).length]), [['GW001', 'https://gradwatch.example/rules/GW001', 0]]);
});
