// Quick fixes for gradwatch diagnostics: the payload's own fix, "Ignore GWxxx for this
// cell" and "Show documentation for GWxxx" (the bundled page, see ruleDocs). The provider gets copies of our diagnostics
// back from VS Code, so it finds the mapped entry by code, range and message.
import * as vscode from 'vscode';
import { MappedEdit } from '../core/mapping';
import { quickFixTitle } from '../core/wording';
import { SOURCE, targetUri, toRange } from './convert';
import { DiagnosticsManager, Entry } from './manager';
import { OPEN_DOCS_COMMAND } from './ruleDocs';

function codeOf(d: vscode.Diagnostic): string | undefined {
  const code = d.code;
  if (typeof code === 'object' && code !== null) return String(code.value);
  return code === undefined ? undefined : String(code);
}

/** Edits of `notebook`'s own cells; undefined if any edit would touch anything else. */
function workspaceEdit(notebook: vscode.NotebookDocument, edits: MappedEdit[]): vscode.WorkspaceEdit | undefined {
  const edit = new vscode.WorkspaceEdit();
  for (const e of edits) {
    if (e.location.target.kind !== 'cell') return undefined; // outputs never edit files
    const uri = targetUri(notebook, e.location);
    if (!uri) return undefined;
    edit.replace(uri, toRange(e.location.range), e.newText);
  }
  return edit;
}

export class GradwatchCodeActions implements vscode.CodeActionProvider {
  static readonly metadata: vscode.CodeActionProviderMetadata = {
    providedCodeActionKinds: [vscode.CodeActionKind.QuickFix],
  };

  constructor(private readonly manager: DiagnosticsManager) {}

  provideCodeActions(
    document: vscode.TextDocument,
    _range: vscode.Range | vscode.Selection,
    context: vscode.CodeActionContext,
  ): vscode.CodeAction[] {
    const entries = this.manager.entriesAt(document.uri);
    const actions: vscode.CodeAction[] = [];
    const ignoredOffered = new Set<string>();
    for (const diagnostic of context.diagnostics) {
      if (diagnostic.source !== SOURCE) continue;
      const entry = entries.find(
        (e) => e.mapped.code === codeOf(diagnostic) && e.diagnostic.range.isEqual(diagnostic.range) && e.diagnostic.message === diagnostic.message,
      );
      if (entry) actions.push(...this.actionsFor(entry, diagnostic, ignoredOffered));
    }
    return actions;
  }

  private actionsFor(entry: Entry, diagnostic: vscode.Diagnostic, ignoredOffered: Set<string>): vscode.CodeAction[] {
    const { mapped, notebook } = entry;
    const actions: vscode.CodeAction[] = [];
    const fix = mapped.fix;
    if (fix && fix.edits.length) {
      const edit = workspaceEdit(notebook, fix.edits);
      if (edit) {
        const action = new vscode.CodeAction(quickFixTitle(fix.applicability, fix.title), vscode.CodeActionKind.QuickFix);
        action.diagnostics = [diagnostic];
        action.isPreferred = fix.preferred; // safe fixes only
        action.edit = edit;
        actions.push(action);
      }
    }
    // One "ignore" per code and origin cell, however many diagnostics share it.
    const ignoreKey = `${mapped.originCellIndex}:${mapped.code}`;
    if (mapped.ignoreEdit && !ignoredOffered.has(ignoreKey)) {
      const edit = workspaceEdit(notebook, [mapped.ignoreEdit]);
      if (edit) {
        ignoredOffered.add(ignoreKey);
        const action = new vscode.CodeAction(`Ignore ${mapped.code} for this cell`, vscode.CodeActionKind.QuickFix);
        action.diagnostics = [diagnostic];
        action.edit = edit;
        actions.push(action);
      }
    }
    // The bundled page (every rule code has one), or the payload's url for a rule this version lacks.
    const action = new vscode.CodeAction(`Show documentation for ${mapped.code}`, vscode.CodeActionKind.QuickFix);
    action.diagnostics = [diagnostic];
    action.command = { title: action.title, command: OPEN_DOCS_COMMAND, arguments: [mapped.code, mapped.url] };
    actions.push(action);
    return actions;
  }
}
