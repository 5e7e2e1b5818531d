// The words users read, in one place, the same as the kernel's text and HTML report
// (kernel_ext/gradwatch/report.py): "cell [2], line 9, col 5", "gradwatch: no problems
// found", and fixes called a "safe fix", a "fix that changes behaviour" or a "suggestion"
// (never the payload's own "unsafe"/"display-only"). Pure: no `vscode` import.
import { Applicability, Location } from './payload';

/** "cell [2], line 9, col 5"; a file location names its path; no cell or path is the reporting cell. */
export function describeLocation(loc: Location): string {
  const place = loc.cell !== null ? `cell [${loc.cell}]` : loc.path !== null ? loc.path : 'this cell';
  return `${place}, line ${loc.line}, col ${loc.column}`;
}

/**
 * A diagnostic's text: the short message, then the help line (as ruff shows them). The
 * Problems panel shows the first line; the hover shows both.
 */
export function diagnosticText(message: string, help: string | null): string {
  return help ? `${message}\n${help}` : message;
}

/** The status bar's tooltip: the count in the report's words, then by severity. */
export function statusTooltip(errors: number, warnings: number, infos: number): string {
  const total = errors + warnings + infos;
  if (!total) return 'gradwatch in this notebook: no problems found';
  return `gradwatch in this notebook: ${total} problem(s): ${errors} error(s), ${warnings} warning(s), ${infos} info`;
}

/** The report's first line, as the kernel's text report words it. */
export function summaryLine(problems: number): string {
  return problems ? `gradwatch: ${problems} problem(s)` : 'gradwatch: no problems found';
}

const FIX_KIND: Record<Applicability, string> = {
  safe: 'safe fix',
  unsafe: 'fix that changes behaviour',
  'display-only': 'suggestion',
};

/** "safe fix", "fix that changes behaviour" or "suggestion". */
export function fixKind(applicability: Applicability): string {
  return FIX_KIND[applicability];
}

/** A fix as one line of prose: "Safe fix: Add `requires_grad=True`". */
export function fixLine(applicability: Applicability, title: string): string {
  const kind = fixKind(applicability);
  return `${kind[0].toUpperCase()}${kind.slice(1)}: ${title}`;
}

/** A fix with edits as a quick fix's title: a fix that changes behaviour says so (it is never the preferred one, see mapping). */
export function quickFixTitle(applicability: Applicability, title: string): string {
  return applicability === 'safe' ? title : `${title} (${fixKind(applicability)})`;
}
