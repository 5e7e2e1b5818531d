// Plain mapped objects -> vscode objects. No decisions here.
import * as vscode from 'vscode';
import { MappedDiagnostic, MappedLocation, Range } from '../core/mapping';
import { Severity } from '../core/payload';
import { docsCommandLink } from '../core/ruleDocs';
import { diagnosticText, fixLine } from '../core/wording';

export const SOURCE = 'gradwatch';

const SEVERITY: Record<Severity, vscode.DiagnosticSeverity> = {
  error: vscode.DiagnosticSeverity.Error,
  warning: vscode.DiagnosticSeverity.Warning,
  info: vscode.DiagnosticSeverity.Information,
};

export function toRange(r: Range): vscode.Range {
  return new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character);
}

/** The URI of a file a payload names by `path` (absolute, or relative to the notebook's folder). */
export function fileUri(notebook: vscode.NotebookDocument, path: string): vscode.Uri | undefined {
  // A UNC path (\\server\share, //server/share) is never touched: it would reach out to a network share.
  if (/^[\\/]{2}/.test(path)) return undefined;
  if (path.startsWith('/') || /^[A-Za-z]:[\\/]/.test(path)) return vscode.Uri.file(path);
  // A relative path is relative to the notebook's folder (the kernel's usual cwd).
  return notebook.uri.scheme === 'untitled' ? undefined : vscode.Uri.joinPath(notebook.uri, '..', path);
}

/** The document URI a location lands in: a cell of `notebook`, or a file on disk. */
export function targetUri(notebook: vscode.NotebookDocument, loc: MappedLocation): vscode.Uri | undefined {
  if (loc.target.kind === 'cell') {
    return notebook.cellAt(loc.target.cellIndex)?.document.uri;
  }
  return fileUri(notebook, loc.target.path);
}

export function toDiagnostic(notebook: vscode.NotebookDocument, m: MappedDiagnostic): vscode.Diagnostic {
  const d = new vscode.Diagnostic(toRange(m.location.range), diagnosticText(m.message, m.help), SEVERITY[m.severity]);
  d.source = SOURCE;
  // The code opens the rule's bundled page (offline); the command checks the code and falls
  // back to the url, which passed payload validation as http(s).
  d.code = { value: m.code, target: vscode.Uri.parse(docsCommandLink(m.code, m.url), true) };
  const related: vscode.DiagnosticRelatedInformation[] = [];
  for (const r of m.related) {
    const uri = targetUri(notebook, r.location);
    if (uri) related.push(new vscode.DiagnosticRelatedInformation(new vscode.Location(uri, toRange(r.location.range)), r.message));
  }
  const here = targetUri(notebook, m.location);
  if (m.fix && m.fix.applicability === 'display-only' && here) {
    // Advice without an edit: shown next to the diagnostic rather than as a code action.
    related.push(new vscode.DiagnosticRelatedInformation(new vscode.Location(here, d.range), fixLine('display-only', m.fix.title)));
  }
  if (related.length) d.relatedInformation = related;
  return d;
}
