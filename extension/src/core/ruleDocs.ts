// Where a rule's bundled page lives, and what may be asked for. The pages ship in the
// .vsix (extension/bundle-rule-docs.mjs); a code that is not a rule code (the command is
// callable by anyone) names no file. Pure: no `vscode` import.

/** Folder of the bundled rule pages, relative to the extension's root. */
export const RULE_DOCS_DIR = ['extension', 'out', 'docs', 'rules'] as const;

/** The command that opens a rule's page: arguments (code, url). */
export const OPEN_DOCS_COMMAND = 'gradwatch.openDocumentation';

/** URI scheme of the read-only rule pages ("gradwatch-rule:/GW001.md"). */
export const RULE_DOC_SCHEME = 'gradwatch-rule';

/** "GW001.md" for a rule code, undefined for anything else ("../x", "gw001", "GW1"). */
export function rulePageName(code: unknown): string | undefined {
  return typeof code === 'string' && /^GW[0-9]{3}$/.test(code) ? `${code}.md` : undefined;
}

/** The page name a "gradwatch-rule:" URI path asks for ("/GW001.md" -> "GW001.md"), or undefined. */
export function pageNameFromPath(uriPath: string): string | undefined {
  const m = /^\/?(GW[0-9]{3})\.md$/.exec(uriPath);
  return m ? rulePageName(m[1]) : undefined;
}

/**
 * The link a diagnostic's code carries: a command link to the bundled page (VS Code's hover
 * and Problems panel open code links with commands allowed), so it works offline too.
 */
export function docsCommandLink(code: string, url: string | null): string {
  return `command:${OPEN_DOCS_COMMAND}?${encodeURIComponent(JSON.stringify([code, url]))}`;
}
