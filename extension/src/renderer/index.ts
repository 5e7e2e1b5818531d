// Notebook renderer for application/vnd.gradwatch.diagnostics+json: a compact table of
// severity, code, message (with its help line and fix) and location. Payload text only ever reaches the DOM through
// textContent (never innerHTML), and only http(s) documentation links become hrefs.
import type { ActivationFunction, OutputItem, RendererContext } from 'vscode-notebook-renderer';
import { LIMITS, Location, Payload, PayloadDiagnostic, validatePayload } from '../core/payload';
import { describeLocation, fixLine, summaryLine } from '../core/wording';

/** Rows drawn per output; the rest are counted (all of them are in the Problems panel). */
export const MAX_ROWS = 200;

const STYLE = `
.gradwatch { font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); color: var(--vscode-foreground); }
.gradwatch table { border-collapse: collapse; width: 100%; }
.gradwatch th { text-align: left; font-weight: 600; border-bottom: 1px solid var(--vscode-panel-border, var(--vscode-widget-border)); }
.gradwatch th, .gradwatch td { padding: 2px 8px; vertical-align: top; text-align: left; }
.gradwatch td.nowrap { white-space: nowrap; }
.gradwatch td.message { width: 100%; }
.gradwatch tr + tr td { border-top: 1px solid var(--vscode-editorWidget-border, transparent); }
.gradwatch .sev-error { color: var(--vscode-editorError-foreground); }
.gradwatch .sev-warning { color: var(--vscode-editorWarning-foreground); }
.gradwatch .sev-info { color: var(--vscode-editorInfo-foreground); }
.gradwatch a { color: var(--vscode-textLink-foreground); cursor: pointer; }
.gradwatch .help, .gradwatch .fix, .gradwatch .summary { color: var(--vscode-descriptionForeground); }
`;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function row(d: PayloadDiagnostic, payload: Payload, ctx: RendererContext<unknown>): HTMLTableRowElement {
  const tr = el('tr');
  tr.append(el('td', d.severity, `nowrap sev-${d.severity}`));
  const code = el('td', undefined, 'nowrap');
  if (d.url || ctx.postMessage) {
    const link = el('a', d.code, 'docs');
    if (d.url) link.href = d.url; // validated http(s)
    link.title = d.name;
    if (ctx.postMessage) {
      // The extension opens the page bundled with it (offline); the url is its fallback.
      link.addEventListener('click', (event) => {
        event.preventDefault();
        ctx.postMessage!({ type: 'docs', code: d.code, url: d.url });
      });
    }
    code.append(link);
  } else {
    code.textContent = d.code;
  }
  tr.append(code);
  const message = el('td', d.message, 'message');
  if (d.help) message.append(el('div', d.help, 'help'));
  if (d.fix) message.append(el('div', fixLine(d.fix.applicability, d.fix.title), 'fix'));
  tr.append(message);
  const loc = el('td', undefined, 'nowrap');
  if (d.location) {
    const location = d.location;
    if (ctx.postMessage) {
      const link = el('a', describeLocation(location), 'reveal');
      link.addEventListener('click', (event) => {
        event.preventDefault();
        ctx.postMessage!({ type: 'reveal', location: toWire(location), executionCount: payload.executionCount });
      });
      loc.append(link);
    } else {
      loc.textContent = describeLocation(location);
    }
  }
  tr.append(loc);
  return tr;
}

/** Back to the payload's snake_case shape; the extension validates it again. */
function toWire(loc: Location) {
  return { cell: loc.cell, path: loc.path, line: loc.line, column: loc.column, end_line: loc.endLine, end_column: loc.endColumn, source: loc.source };
}

function render(raw: unknown, ctx: RendererContext<unknown>): HTMLElement {
  const root = el('div', undefined, 'gradwatch');
  root.append(el('style', STYLE));
  const result = validatePayload(raw);
  if (!result.ok) {
    root.append(el('div', `gradwatch: output not shown (${result.error})`, 'summary'));
    return root;
  }
  const { payload } = result;
  const n = payload.diagnostics.length;
  root.append(el('div', summaryLine(n), 'summary'));
  if (!n) return root;
  const table = el('table');
  const head = el('tr');
  for (const title of ['Severity', 'Code', 'Message', 'Location']) head.append(el('th', title));
  table.append(head);
  for (const d of payload.diagnostics.slice(0, MAX_ROWS)) table.append(row(d, payload, ctx));
  root.append(table);
  if (n > MAX_ROWS) root.append(el('div', `${n - MAX_ROWS} more not shown here`, 'summary'));
  return root;
}

function notice(text: string): HTMLElement {
  const root = el('div', undefined, 'gradwatch');
  root.append(el('style', STYLE));
  root.append(el('div', text, 'summary'));
  return root;
}

export const activate: ActivationFunction = (ctx) => ({
  renderOutputItem(item: OutputItem, element: HTMLElement) {
    // The renderer's own cap, before any parsing: an output is a file anyone can send.
    const size = typeof item.data === 'function' ? item.data().byteLength : 0;
    if (size > LIMITS.maxPayloadBytes) {
      element.replaceChildren(notice(`gradwatch: output not shown (${size} bytes, more than the ${LIMITS.maxPayloadBytes} a payload may have)`));
      return;
    }
    let raw: unknown;
    try {
      raw = item.json();
    } catch {
      raw = undefined;
    }
    element.replaceChildren(render(raw, ctx));
  },
});
