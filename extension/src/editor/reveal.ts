// The renderer's "reveal" links post {type: "reveal", location} here; the location is
// payload data again, so it is validated before we resolve it to a cell and range. Its
// code links post {type: "docs", code, url}: the bundled rule page opens.
import * as vscode from 'vscode';
import { CellModel, mapNotebook } from '../core/mapping';
import { splitLines } from '../core/positions';
import { Payload, validateLocation } from '../core/payload';
import { toRange, targetUri } from './convert';
import { log } from './log';
import { OPEN_DOCS_COMMAND } from './ruleDocs';

export const RENDERER_ID = 'gradwatch.diagnostics-renderer';

export async function reveal(
  notebook: vscode.NotebookDocument,
  rawLocation: unknown,
  originExecutionCount: unknown,
  fileLines?: (path: string) => string[] | undefined,
): Promise<boolean> {
  let location;
  try {
    location = validateLocation(rawLocation);
  } catch (e) {
    log().warn(`reveal request ignored: ${(e as Error).message}`);
    return false;
  }
  // Reuse the mapper with a one-diagnostic payload so reveal and squiggles agree on ranges.
  const count = typeof originExecutionCount === 'number' && Number.isInteger(originExecutionCount) ? originExecutionCount : null;
  const payload: Payload = {
    toolVersion: '',
    executionCount: count,
    diagnostics: [{ code: 'GW000', name: 'reveal', severity: 'error', message: '', help: null, location, related: [], fix: null, url: null }],
  };
  const cells: CellModel[] = notebook.getCells().map((c) => ({
    index: c.index,
    executionOrder: c.executionSummary?.executionOrder,
    lines: splitLines(c.document.getText()),
    payloads: [],
  }));
  // The output's own cell (by its execution count) anchors locations without a cell;
  // failing that, a location that names its cell can still be placed from there.
  const origin = cells.find((c) => c.executionOrder === count) ?? (location.cell !== null ? cells.find((c) => c.executionOrder === location.cell) : undefined);
  if (!origin) return false;
  origin.payloads = [payload];
  const [mapped] = mapNotebook(cells, { minimumSeverity: 'info', fileLines });
  const uri = mapped && targetUri(notebook, mapped.location);
  if (!uri) {
    vscode.window.setStatusBarMessage('gradwatch: that code has changed since it was diagnosed', 4000);
    return false;
  }
  const range = toRange(mapped.location.range);
  if (mapped.location.target.kind === 'cell') {
    const editor = vscode.window.visibleNotebookEditors.find((e) => e.notebook === notebook);
    editor?.revealRange(new vscode.NotebookRange(mapped.location.target.cellIndex, mapped.location.target.cellIndex + 1), vscode.NotebookEditorRevealType.InCenterIfOutsideViewport);
    const cellDocument = notebook.cellAt(mapped.location.target.cellIndex).document;
    await vscode.window.showTextDocument(cellDocument, { selection: range, viewColumn: editor?.viewColumn });
  } else {
    await vscode.window.showTextDocument(uri, { selection: range });
  }
  return true;
}

export function registerRendererMessaging(fileLinesFor: (notebook: vscode.NotebookDocument) => (path: string) => string[] | undefined): vscode.Disposable {
  const messaging = vscode.notebooks.createRendererMessaging(RENDERER_ID);
  return messaging.onDidReceiveMessage(({ editor, message }) => {
    if (typeof message !== 'object' || message === null) return;
    const m = message as { type?: unknown; location?: unknown; executionCount?: unknown; code?: unknown; url?: unknown };
    // Both are payload data again: the command checks the code and the url itself.
    if (m.type === 'docs') void vscode.commands.executeCommand(OPEN_DOCS_COMMAND, m.code, m.url);
    if (m.type === 'reveal') void reveal(editor.notebook, m.location, m.executionCount, fileLinesFor(editor.notebook));
  });
}
