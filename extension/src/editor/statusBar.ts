// Status bar count of gradwatch diagnostics in the active notebook.
import * as vscode from 'vscode';
import { statusTooltip } from '../core/wording';
import { DiagnosticsManager } from './manager';

export function createStatusBar(manager: DiagnosticsManager, enabled: () => boolean): vscode.Disposable {
  const item = vscode.window.createStatusBarItem('gradwatch.status', vscode.StatusBarAlignment.Left, 0);
  item.name = 'gradwatch';
  item.command = 'workbench.actions.view.problems';
  const update = () => {
    const notebook = vscode.window.activeNotebookEditor?.notebook;
    if (!notebook || !enabled()) {
      item.hide();
      return;
    }
    const entries = manager.entriesOf(notebook);
    const errors = entries.filter((e) => e.mapped.severity === 'error').length;
    const warnings = entries.filter((e) => e.mapped.severity === 'warning').length;
    const infos = entries.length - errors - warnings;
    item.text = entries.length ? `$(pulse) gradwatch: ${entries.length}` : '$(pulse) gradwatch: 0';
    item.tooltip = statusTooltip(errors, warnings, infos);
    item.show();
  };
  update();
  return vscode.Disposable.from(
    item,
    manager.onDidChange(update),
    vscode.window.onDidChangeActiveNotebookEditor(update),
  );
}
