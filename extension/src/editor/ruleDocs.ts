// "Show documentation for GWxxx": the rule's page bundled in the .vsix, shown read-only in
// VS Code's Markdown preview beside the notebook (offline). The payload's http(s) `url` is
// the fallback for a code this version does not bundle (a newer kernel's rule).
import * as vscode from 'vscode';
import { OPEN_DOCS_COMMAND, RULE_DOCS_DIR, RULE_DOC_SCHEME, pageNameFromPath, rulePageName } from '../core/ruleDocs';
import { safeHttpUrl } from '../core/payload';
import { log } from './log';

export { OPEN_DOCS_COMMAND };

/** The bundled rule pages as read-only documents at "gradwatch-rule:/GW001.md", and the command. */
export function registerRuleDocs(extensionUri: vscode.Uri): vscode.Disposable {
  const pageUri = (name: string) => vscode.Uri.joinPath(extensionUri, ...RULE_DOCS_DIR, name);
  const provider: vscode.TextDocumentContentProvider = {
    async provideTextDocumentContent(uri) {
      const name = pageNameFromPath(uri.path);
      if (!name) return undefined;
      return new TextDecoder('utf-8').decode(await vscode.workspace.fs.readFile(pageUri(name)));
    },
  };
  return vscode.Disposable.from(
    vscode.workspace.registerTextDocumentContentProvider(RULE_DOC_SCHEME, provider),
    vscode.commands.registerCommand(OPEN_DOCS_COMMAND, (code: unknown, url: unknown) => openDocumentation(pageUri, code, url)),
  );
}

async function exists(uri: vscode.Uri): Promise<boolean> {
  try {
    return (await vscode.workspace.fs.stat(uri)).type === vscode.FileType.File;
  } catch {
    return false;
  }
}

/** Opens the bundled page of `code`; else its http(s) `url` in the browser. False if neither. */
export async function openDocumentation(pageUri: (name: string) => vscode.Uri, code: unknown, url: unknown): Promise<boolean> {
  const name = rulePageName(code);
  if (name && (await exists(pageUri(name)))) {
    const doc = vscode.Uri.from({ scheme: RULE_DOC_SCHEME, path: `/${name}` });
    try {
      await vscode.commands.executeCommand('markdown.showPreviewToSide', doc);
    } catch (e) {
      // The built-in Markdown extension may be disabled: the page as read-only text then.
      log().warn(`Markdown preview unavailable (${(e as Error).message}); showing ${name} as text`);
      await vscode.window.showTextDocument(doc, { preview: true, viewColumn: vscode.ViewColumn.Beside });
    }
    return true;
  }
  const safe = safeHttpUrl(url);
  if (!safe) {
    vscode.window.setStatusBarMessage(`gradwatch: no documentation for ${name ? String(code) : 'that code'} in this version`, 4000);
    return false;
  }
  return vscode.env.openExternal(vscode.Uri.parse(safe, true));
}
