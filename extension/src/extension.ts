// Wires the pieces to VS Code's notebook life cycle. Everything here is plumbing:
// which events refresh which notebook, and what to register.
import * as vscode from 'vscode';
import { GradwatchCodeActions, OPEN_DOCS_COMMAND, openDocumentation } from './editor/codeActions';
import { log } from './editor/log';
import { DiagnosticsManager, readSettings } from './editor/manager';
import { registerRendererMessaging } from './editor/reveal';
import { createStatusBar } from './editor/statusBar';

export function activate(context: vscode.ExtensionContext): void {
  const manager = new DiagnosticsManager(readSettings());
  const ws = vscode.workspace;
  context.subscriptions.push(
    manager,
    log(),
    // Outputs, execution summaries and cell text all arrive through this one event.
    ws.onDidChangeNotebookDocument((e) => manager.refresh(e.notebook)),
    ws.onDidOpenNotebookDocument((nb) => manager.refresh(nb)),
    ws.onDidCloseNotebookDocument((nb) => manager.forget(nb)),
    ws.onDidChangeTextDocument((e) => e.document.uri.scheme === 'file' && manager.refreshFileUsers()),
    // Files named by `path` locations: staleness is checked against open documents only.
    ws.onDidOpenTextDocument((d) => d.uri.scheme === 'file' && manager.refreshFileUsers()),
    ws.onDidCloseTextDocument((d) => d.uri.scheme === 'file' && manager.refreshFileUsers()),
    ws.onDidChangeConfiguration((e) => e.affectsConfiguration('gradwatch') && manager.setSettings(readSettings())),
    vscode.languages.registerCodeActionsProvider(
      [{ scheme: 'vscode-notebook-cell' }, { scheme: 'file' }],
      new GradwatchCodeActions(manager),
      GradwatchCodeActions.metadata,
    ),
    vscode.commands.registerCommand(OPEN_DOCS_COMMAND, openDocumentation),
    registerRendererMessaging(),
    createStatusBar(manager, () => manager.enabled),
  );
  for (const nb of ws.notebookDocuments) manager.refresh(nb);
  log().info('gradwatch activated');
}

export function deactivate(): void {}
