// Owns the DiagnosticCollection. Each refresh re-maps one notebook from scratch (its
// outputs, execution counts and current cell text): a re-run cell's new output replaces
// the old, edited lines go stale, and duplicates cannot pile up. Several notebooks may
// publish on the same file, so a URI's diagnostics are the union of every notebook's.
//
// Refreshes after edits are debounced per notebook, cell text is split once per document
// version, mapping is capped per notebook (MAP_LIMITS), and entries are indexed by URI, so a
// keystroke in a large notebook costs one bounded re-map after typing pauses.
import * as vscode from 'vscode';
import { FileLines } from '../core/files';
import { CellModel, MappedDiagnostic, mapNotebook } from '../core/mapping';
import { splitLines } from '../core/positions';
import { Severity } from '../core/payload';
import { cellPayloads } from './outputs';
import { fileUri, targetUri, toDiagnostic } from './convert';

export interface Entry {
  uri: vscode.Uri;
  notebook: vscode.NotebookDocument;
  mapped: MappedDiagnostic;
  diagnostic: vscode.Diagnostic;
}

interface NotebookState {
  entries: Entry[];
  byUri: Map<string, Entry[]>;
  uris: Map<string, vscode.Uri>;
  /** Whether any payload points into files, so file edits should trigger a refresh. */
  usesFiles: boolean;
}

export interface Settings {
  enable: boolean;
  minimumSeverity: Severity;
}

/** Milliseconds a notebook's refresh waits for more changes (typing) before it runs. */
export const REFRESH_DELAY_MS = 150;
/** Closed files bigger than this are not read to confirm a location (it is then not shown). */
const MAX_FILE_BYTES = 4 * 1024 * 1024;

export function readSettings(): Settings {
  const config = vscode.workspace.getConfiguration('gradwatch');
  const minimum = config.get<string>('minimumSeverity', 'info');
  return {
    enable: config.get<boolean>('enable', true),
    minimumSeverity: minimum === 'error' || minimum === 'warning' ? minimum : 'info',
  };
}

const cellLines = new WeakMap<vscode.TextDocument, { version: number; lines: string[] }>();

function linesOf(document: vscode.TextDocument): string[] {
  const hit = cellLines.get(document);
  if (hit && hit.version === document.version) return hit.lines;
  const lines = splitLines(document.getText());
  cellLines.set(document, { version: document.version, lines });
  return lines;
}

export class DiagnosticsManager implements vscode.Disposable {
  private readonly collection = vscode.languages.createDiagnosticCollection('gradwatch');
  private readonly notebooks = new Map<string, NotebookState>();
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;
  readonly files = new FileLines(
    {
      openText: (key) => vscode.workspace.textDocuments.find((d) => d.uri.toString() === key)?.getText(),
      read: readFileText,
      now: () => Date.now(),
    },
    () => this.refreshFileUsers(),
  );

  constructor(private settings: Settings) {}

  get enabled(): boolean {
    return this.settings.enable;
  }

  setSettings(settings: Settings): void {
    this.settings = settings;
    for (const nb of vscode.workspace.notebookDocuments) this.refresh(nb);
    this.changed.fire(); // the status bar shows or hides with `enable`
  }

  /**
   * A notebook changed. Cell edits in a notebook without gradwatch diagnostics change
   * nothing; anything else re-maps the notebook once the changes pause.
   */
  notebookChanged(e: vscode.NotebookDocumentChangeEvent): void {
    const relevant =
      this.notebooks.has(e.notebook.uri.toString()) || // it holds payloads
      e.contentChanges.length > 0 ||
      e.cellChanges.some((c) => c.outputs !== undefined || c.executionSummary !== undefined);
    if (relevant) this.schedule(e.notebook);
  }

  /** Re-map a notebook after REFRESH_DELAY_MS, once however many changes arrive meanwhile. */
  schedule(notebook: vscode.NotebookDocument): void {
    const key = notebook.uri.toString();
    const pending = this.timers.get(key);
    if (pending !== undefined) clearTimeout(pending);
    this.timers.set(
      key,
      setTimeout(() => {
        this.timers.delete(key);
        this.refresh(notebook);
      }, REFRESH_DELAY_MS),
    );
  }

  refresh(notebook: vscode.NotebookDocument): void {
    const key = notebook.uri.toString();
    const pending = this.timers.get(key);
    if (pending !== undefined) {
      clearTimeout(pending);
      this.timers.delete(key);
    }
    const old = this.notebooks.get(key);
    const state: NotebookState = { entries: [], byUri: new Map(), uris: new Map(), usesFiles: false };
    let hasPayloads = false;
    if (this.settings.enable && !notebook.isClosed) {
      const cells: CellModel[] = notebook.getCells().map((cell) => ({
        index: cell.index,
        executionOrder: cell.executionSummary?.executionOrder,
        lines: [],
        payloads: cellPayloads(cell),
      }));
      hasPayloads = cells.some((c) => c.payloads.length);
      if (hasPayloads) {
        // Only notebooks that hold payloads pay for reading every cell's text.
        cells.forEach((c) => (c.lines = linesOf(notebook.cellAt(c.index).document)));
        state.usesFiles = cells.some((c) => c.payloads.some((p) => p.diagnostics.some((d) => d.location?.path)));
        const mapped = mapNotebook(cells, { minimumSeverity: this.settings.minimumSeverity, fileLines: this.fileLinesFor(notebook) });
        for (const m of mapped) {
          const uri = targetUri(notebook, m.location);
          if (!uri) continue;
          const entry = { uri, notebook, mapped: m, diagnostic: toDiagnostic(notebook, m) };
          state.entries.push(entry);
          const uriKey = uri.toString();
          const list = state.byUri.get(uriKey);
          if (list) list.push(entry);
          else {
            state.byUri.set(uriKey, [entry]);
            state.uris.set(uriKey, uri);
          }
        }
      }
    }
    // A notebook that holds payloads stays known even when nothing maps now (stale lines,
    // a file not read yet): an undo or a file read may bring its diagnostics back.
    if (hasPayloads) this.notebooks.set(key, state);
    else this.notebooks.delete(key);
    if (!old?.entries.length && !state.entries.length) return;
    this.publish(new Map([...(old?.uris ?? []), ...state.uris]));
  }

  /** The current lines of a file a payload of `notebook` names, if known (see FileLines). */
  fileLinesFor(notebook: vscode.NotebookDocument): (path: string) => string[] | undefined {
    return (path) => {
      const uri = fileUri(notebook, path);
      return uri ? this.files.lines(uri.toString()) : undefined;
    };
  }

  /** A file was edited, saved, opened or closed: notebooks whose payloads name files re-map. */
  fileChanged(uri: vscode.Uri): void {
    this.files.invalidate(uri.toString());
    for (const nb of vscode.workspace.notebookDocuments) {
      if (this.notebooks.get(nb.uri.toString())?.usesFiles) this.schedule(nb);
    }
  }

  /** Refresh notebooks whose payloads point into files (a file's text became known or changed). */
  refreshFileUsers(): void {
    for (const nb of vscode.workspace.notebookDocuments) {
      if (this.notebooks.get(nb.uri.toString())?.usesFiles) this.schedule(nb);
    }
  }

  forget(notebook: vscode.NotebookDocument): void {
    const key = notebook.uri.toString();
    const pending = this.timers.get(key);
    if (pending !== undefined) clearTimeout(pending);
    this.timers.delete(key);
    const old = this.notebooks.get(key);
    if (!old) return;
    this.notebooks.delete(key);
    this.publish(old.uris);
  }

  /** The published entries on a document (a cell or a file). */
  entriesAt(uri: vscode.Uri): Entry[] {
    const key = uri.toString();
    return [...this.notebooks.values()].flatMap((s) => s.byUri.get(key) ?? []);
  }

  entriesOf(notebook: vscode.NotebookDocument): Entry[] {
    return this.notebooks.get(notebook.uri.toString())?.entries ?? [];
  }

  /** Re-sets the collection on every given URI (those of the old and the new entries). */
  private publish(touched: Map<string, vscode.Uri>): void {
    for (const uri of touched.values()) {
      const entries = this.entriesAt(uri);
      this.collection.set(uri, entries.length ? entries.map((e) => e.diagnostic) : undefined);
    }
    this.changed.fire();
  }

  dispose(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.collection.dispose();
    this.changed.dispose();
  }
}

/**
 * A closed file's text, to confirm a payload location in it. Read only in a trusted
 * workspace, only inside a workspace folder, only a regular file of bounded size: payloads
 * are untrusted and may name any path.
 */
async function readFileText(key: string): Promise<string | undefined> {
  if (!vscode.workspace.isTrusted) return undefined;
  const uri = vscode.Uri.parse(key, true);
  if (uri.scheme !== 'file' || !isInsideWorkspace(uri)) return undefined;
  const stat = await vscode.workspace.fs.stat(uri);
  if (stat.type !== vscode.FileType.File || stat.size > MAX_FILE_BYTES) return undefined;
  const bytes = await vscode.workspace.fs.readFile(uri);
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
}

function isInsideWorkspace(uri: vscode.Uri): boolean {
  const path = uri.path;
  return (vscode.workspace.workspaceFolders ?? []).some((folder) => {
    if (folder.uri.scheme !== uri.scheme || folder.uri.authority !== uri.authority) return false;
    const root = folder.uri.path.endsWith('/') ? folder.uri.path : `${folder.uri.path}/`;
    return path.startsWith(root);
  });
}
