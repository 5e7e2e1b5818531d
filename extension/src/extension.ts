// Wires the pieces to VS Code's notebook life cycle. Everything here is plumbing:
// which events refresh which notebook, and what to register.
import * as vscode from 'vscode';
import { GradwatchCodeActions } from './editor/codeActions';
import { log } from './editor/log';
import { DiagnosticsManager, readSettings } from './editor/manager';
import { registerRendererMessaging } from './editor/reveal';
import { registerRuleDocs } from './editor/ruleDocs';
import { createStatusBar } from './editor/statusBar';

export function activate(context: vscode.ExtensionContext): void {
  const manager = new DiagnosticsManager(readSettings());
  const ws = vscode.workspace;
  context.subscriptions.push(
    manager,
    log(),
    // Outputs, execution summaries and cell text all arrive through this one event; the
    // manager re-maps once typing pauses, and ignores edits of notebooks without payloads.
    ws.onDidChangeNotebookDocument((e) => manager.notebookChanged(e)),
    ws.onDidOpenNotebookDocument((nb) => manager.refresh(nb)),
    ws.onDidCloseNotebookDocument((nb) => manager.forget(nb)),
    // Files named by `path` locations are checked against their current text: the open
    // document's, else the file's on disk (re-read when saved, opened or closed).
    ws.onDidChangeTextDocument((e) => e.document.uri.scheme === 'file' && manager.fileChanged(e.document.uri)),
    ws.onDidSaveTextDocument((d) => d.uri.scheme === 'file' && manager.fileChanged(d.uri)),
    ws.onDidOpenTextDocument((d) => d.uri.scheme === 'file' && manager.fileChanged(d.uri)),
    ws.onDidCloseTextDocument((d) => d.uri.scheme === 'file' && manager.fileChanged(d.uri)),
    ws.onDidGrantWorkspaceTrust(() => manager.refreshFileUsers()),
    ws.onDidChangeConfiguration((e) => e.affectsConfiguration('gradwatch') && manager.setSettings(readSettings())),
    vscode.languages.registerCodeActionsProvider(
      [{ scheme: 'vscode-notebook-cell' }, { scheme: 'file' }],
      new GradwatchCodeActions(manager),
      GradwatchCodeActions.metadata,
    ),
    registerRuleDocs(context.extensionUri),
    registerRendererMessaging((nb) => manager.fileLinesFor(nb)),
    createStatusBar(manager, () => manager.enabled),
  );
  for (const nb of ws.notebookDocuments) manager.refresh(nb);
  log().info('gradwatch activated');
}

export function deactivate(): void {}
