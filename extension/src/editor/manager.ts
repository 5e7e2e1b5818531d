// Owns the DiagnosticCollection. Each refresh re-maps one notebook from scratch (its
// outputs, execution counts and current cell text): a re-run cell's new output replaces
// the old, edited lines go stale, and duplicates cannot pile up. Several notebooks may
// publish on the same file, so a URI's diagnostics are the union of every notebook's.
import * as vscode from 'vscode';
import { CellModel, MappedDiagnostic, mapNotebook } from '../core/mapping';
import { splitLines } from '../core/positions';
import { Severity } from '../core/payload';
import { cellPayloads } from './outputs';
import { targetUri, toDiagnostic } from './convert';

export interface Entry {
  uri: vscode.Uri;
  notebook: vscode.NotebookDocument;
  mapped: MappedDiagnostic;
  diagnostic: vscode.Diagnostic;
}

interface NotebookState {
  entries: Entry[];
  /** Whether any payload points into files, so file edits should trigger a refresh. */
  usesFiles: boolean;
}

export interface Settings {
  enable: boolean;
  minimumSeverity: Severity;
}

export function readSettings(): Settings {
  const config = vscode.workspace.getConfiguration('gradwatch');
  const minimum = config.get<string>('minimumSeverity', 'info');
  return {
    enable: config.get<boolean>('enable', true),
    minimumSeverity: minimum === 'error' || minimum === 'warning' ? minimum : 'info',
  };
}

export class DiagnosticsManager implements vscode.Disposable {
  private readonly collection = vscode.languages.createDiagnosticCollection('gradwatch');
  private readonly notebooks = new Map<string, NotebookState>();
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;

  constructor(private settings: Settings) {}

  get enabled(): boolean {
    return this.settings.enable;
  }

  setSettings(settings: Settings): void {
    this.settings = settings;
    for (const nb of vscode.workspace.notebookDocuments) this.refresh(nb);
    this.changed.fire(); // the status bar shows or hides with `enable`
  }

  refresh(notebook: vscode.NotebookDocument): void {
    const key = notebook.uri.toString();
    const old = this.notebooks.get(key);
    const state: NotebookState = { entries: [], usesFiles: false };
    if (this.settings.enable && !notebook.isClosed) {
      const cells: CellModel[] = notebook.getCells().map((cell) => ({
        index: cell.index,
        executionOrder: cell.executionSummary?.executionOrder,
        lines: [],
        payloads: cellPayloads(cell),
      }));
      if (cells.some((c) => c.payloads.length)) {
        // Only notebooks that hold payloads pay for reading every cell's text.
        cells.forEach((c) => (c.lines = splitLines(notebook.cellAt(c.index).document.getText())));
        state.usesFiles = cells.some((c) => c.payloads.some((p) => p.diagnostics.some((d) => d.location?.path)));
        const mapped = mapNotebook(cells, { minimumSeverity: this.settings.minimumSeverity, fileLines: openFileLines });
        for (const m of mapped) {
          const uri = targetUri(notebook, m.location);
          if (uri) state.entries.push({ uri, notebook, mapped: m, diagnostic: toDiagnostic(notebook, m) });
        }
      }
    }
    if (!old && !state.entries.length) return;
    this.notebooks.set(key, state);
    this.publish([...(old?.entries ?? []), ...state.entries]);
  }

  /** Refresh notebooks whose payloads point into files (a file was edited, opened or closed). */
  refreshFileUsers(): void {
    for (const nb of vscode.workspace.notebookDocuments) {
      if (this.notebooks.get(nb.uri.toString())?.usesFiles) this.refresh(nb);
    }
  }

  forget(notebook: vscode.NotebookDocument): void {
    const old = this.notebooks.get(notebook.uri.toString());
    if (!old) return;
    this.notebooks.delete(notebook.uri.toString());
    this.publish(old.entries);
  }

  /** The published entries on a document (a cell or a file). */
  entriesAt(uri: vscode.Uri): Entry[] {
    const key = uri.toString();
    return [...this.notebooks.values()].flatMap((s) => s.entries.filter((e) => e.uri.toString() === key));
  }

  entriesOf(notebook: vscode.NotebookDocument): Entry[] {
    return this.notebooks.get(notebook.uri.toString())?.entries ?? [];
  }

  /** Re-sets the collection on every URI the given (old or new) entries touch. */
  private publish(touched: Entry[]): void {
    const uris = new Map(touched.map((e) => [e.uri.toString(), e.uri]));
    for (const [key, uri] of uris) {
      const diagnostics = [...this.notebooks.values()].flatMap((s) =>
        s.entries.filter((e) => e.uri.toString() === key).map((e) => e.diagnostic),
      );
      this.collection.set(uri, diagnostics.length ? diagnostics : undefined);
    }
    this.changed.fire();
  }

  dispose(): void {
    this.collection.dispose();
    this.changed.dispose();
  }
}

function openFileLines(path: string): string[] | undefined {
  const doc = vscode.workspace.textDocuments.find((d) => d.uri.scheme === 'file' && d.uri.fsPath === path);
  return doc ? splitLines(doc.getText()) : undefined;
}
