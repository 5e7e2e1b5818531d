// What both e2e suites share: waits, the driver hand-off, and diagnostics as text.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const vscode = require('vscode');

const SYNC = process.env.GRADWATCH_E2E_SYNC;
const MIME = 'application/vnd.gradwatch.diagnostics+json';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns without throwing (like ruff-vscode's e2e waits), then returns its value. */
async function eventually(fn, timeoutMs = 30000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > until) throw e;
      await sleep(200);
    }
  }
}

let step = 0;
/** Asks the Playwright driver to do `what` (with `extra` fields, e.g. text to type) and waits for its answer. */
async function askDriver(what, timeoutMs = 60000, extra = {}) {
  step += 1;
  // Written whole, then renamed: the driver never reads half a request.
  const request = path.join(SYNC, `request-${step}.json`);
  fs.writeFileSync(`${request}.tmp`, JSON.stringify({ ...extra, step, what }));
  fs.renameSync(`${request}.tmp`, request);
  const done = path.join(SYNC, `done-${step}.json`);
  const answer = await eventually(() => JSON.parse(fs.readFileSync(done, 'utf8')), timeoutMs);
  assert.deepStrictEqual(answer.failures, [], `driver step "${what}" failed`);
  return answer;
}

function summarize(d, doc) {
  const r = d.range;
  const code = typeof d.code === 'object' ? d.code.value : d.code;
  const sev = ['error', 'warning', 'info', 'hint'][d.severity];
  return `${code} ${sev} ${r.start.line + 1}:${r.start.character + 1}-${r.end.line + 1}:${r.end.character + 1} ${JSON.stringify(doc.getText(r))}`;
}

/** Every gradwatch diagnostic on any cell of the notebook named `name`, open or not. */
function notebookDiagnostics(name) {
  return vscode.languages
    .getDiagnostics()
    .filter(([uri]) => uri.path.endsWith('/' + name))
    .flatMap(([, ds]) => ds.filter((d) => d.source === 'gradwatch'));
}

function cellDiagnostics(cell) {
  return vscode.languages.getDiagnostics(cell.document.uri).filter((d) => d.source === 'gradwatch');
}

/** `cell`'s gradwatch diagnostics as "CODE severity L:C-L:C text", in range order; `codes` narrows them. */
function described(cell, codes) {
  return cellDiagnostics(cell)
    .filter((d) => !codes || codes.includes(typeof d.code === 'object' ? d.code.value : d.code))
    .sort((a, b) => a.range.start.compareTo(b.range.start) || String(a.code.value ?? a.code).localeCompare(String(b.code.value ?? b.code)))
    .map((d) => summarize(d, cell.document));
}

/** All code actions VS Code collects at a range (the result carries no diagnostics: match by title). */
async function codeActions(cell, range) {
  // The command needs the cell's text model in the window: scroll to the cell and show it.
  const editor = await vscode.window.showNotebookDocument(cell.notebook);
  editor.revealRange(new vscode.NotebookRange(cell.index, cell.index + 1), vscode.NotebookEditorRevealType.AtTop);
  await eventually(() =>
    vscode.window.showTextDocument(cell.document, { selection: new vscode.Range(range.start, range.start), viewColumn: editor.viewColumn }),
  );
  return vscode.commands.executeCommand('vscode.executeCodeActionProvider', cell.document.uri, range);
}

module.exports = { SYNC, MIME, sleep, eventually, askDriver, summarize, notebookDiagnostics, cellDiagnostics, described, codeActions };
