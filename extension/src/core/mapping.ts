// Maps validated payloads found in a notebook's outputs to plain, editor-shaped objects:
// which cell (or file) each diagnostic lands in, its 0-based UTF-16 range, and which
// fixes still apply. Decides nothing about PyTorch: the payload already says what is
// wrong. Pure: no `vscode` import.

import { codePointColumnToUtf16 } from './positions';
import { ignoredCodes, withIgnoredCode } from './magic';
import { Applicability, ELLIPSIS, LIMITS, Location, Payload, PayloadDiagnostic, Severity, codePointLength } from './payload';

/**
 * What one notebook may publish, whatever its outputs hold: an editor is not a log viewer,
 * and mapping must stay cheap when it runs after an edit (300 cells of 500 diagnostics with
 * 20 related locations each are cut to this, not mapped in full).
 */
export const MAP_LIMITS = {
  maxDiagnosticsPerNotebook: 1000,
  /** Payload diagnostics looked at per notebook (stale or filtered ones included). */
  maxDiagnosticsExamined: 20_000,
  maxRelatedShown: 20,
} as const;

/** What the mapper needs to know about a notebook cell. */
export interface CellModel {
  index: number;
  /** The cell's execution count as the notebook records it (executionSummary.executionOrder). */
  executionOrder: number | undefined;
  lines: string[];
  /** Validated payloads from this cell's outputs, in output order. */
  payloads: Payload[];
}

export type Target = { kind: 'cell'; cellIndex: number } | { kind: 'file'; path: string };

/** 0-based line, 0-based UTF-16 character (as vscode.Position). */
export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface MappedLocation {
  target: Target;
  range: Range;
}

export interface MappedEdit {
  location: MappedLocation;
  newText: string;
}

export interface MappedFix {
  title: string;
  /**
   * As the payload says, except that a fix with an edit outside this notebook's cells is
   * "display-only": outputs are untrusted, and may only ever edit their own notebook.
   */
  applicability: Applicability;
  /** Only "safe" fixes are offered as the preferred quick fix. */
  preferred: boolean;
  /** Empty for display-only fixes: they are advice, not edits. Edits only target cells. */
  edits: MappedEdit[];
}

export interface MappedDiagnostic {
  /** Identity used to drop duplicates (same output seen twice, or re-published). */
  key: string;
  code: string;
  name: string;
  severity: Severity;
  message: string;
  /** The payload's help line (why, what to do), or null. */
  help: string | null;
  url: string | null;
  location: MappedLocation;
  related: { location: MappedLocation; message: string }[];
  fix: MappedFix | null;
  /** The cell whose output carried the payload: its `%%gradwatch` line is where ignores go. */
  originCellIndex: number;
  /** Replacement of the origin cell's first line that ignores this code; null if not possible. */
  ignoreEdit: MappedEdit | null;
}

export interface MapOptions {
  minimumSeverity: Severity;
  /**
   * The current lines of a file named by a `path` location (open in the editor or read from
   * disk), or undefined when they are not known (yet): such a location is not placed, since
   * only the file's current text can confirm it.
   */
  fileLines?: (path: string) => string[] | undefined;
}

const SEVERITY_RANK: Record<Severity, number> = { error: 3, warning: 2, info: 1 };

export function meetsSeverity(severity: Severity, minimum: Severity): boolean {
  return SEVERITY_RANK[severity] >= SEVERITY_RANK[minimum];
}

/**
 * Whether a line still reads as the payload's `source` says. The kernel cuts a source longer
 * than the schema allows to its first characters and an ellipsis; such a source is compared
 * as the start of the line.
 */
export function sourceMatches(lineText: string | undefined, source: string): boolean {
  if (lineText === undefined) return false;
  if (lineText === source) return true;
  if (!source.endsWith(ELLIPSIS) || source.length < LIMITS.maxSource || codePointLength(source) !== LIMITS.maxSource) return false;
  const kept = source.slice(0, -ELLIPSIS.length);
  return lineText.length > kept.length && lineText.startsWith(kept);
}

/**
 * The cell a location's execution count refers to. The origin cell wins when it carries
 * that count; otherwise the closest earlier cell with that count (after a kernel restart
 * counts repeat, and code that ran before the diagnosing cell sits above it), then any.
 */
function resolveCell(byCount: Map<number, CellModel[]>, origin: CellModel, payload: Payload, count: number | null): CellModel | undefined {
  if (count === null) return origin;
  if (origin.executionOrder === count) return origin;
  if (origin.executionOrder === undefined && payload.executionCount === count) return origin;
  const matches = byCount.get(count);
  if (!matches) return undefined;
  let earlier: CellModel | undefined;
  for (const c of matches) if (c.index < origin.index) earlier = c; // matches are in cell order
  return earlier ?? matches[0];
}

function cellsByCount(cells: CellModel[]): Map<number, CellModel[]> {
  const byCount = new Map<number, CellModel[]>();
  for (const c of cells) {
    if (c.executionOrder === undefined) continue;
    const list = byCount.get(c.executionOrder);
    if (list) list.push(c);
    else byCount.set(c.executionOrder, [c]);
  }
  for (const list of byCount.values()) list.sort((a, b) => a.index - b.index);
  return byCount;
}

interface Context {
  byCount: Map<number, CellModel[]>;
  origin: CellModel;
  payload: Payload;
  options: MapOptions;
}

function isFileLocation(loc: Location): boolean {
  return loc.path !== null && loc.cell === null;
}

/**
 * Resolves a payload location to a target and range, or undefined when it cannot be
 * placed or is stale (the line no longer reads as it did when diagnosed).
 */
function mapLocation(ctx: Context, loc: Location): MappedLocation | undefined {
  let target: Target;
  let lines: string[] | undefined;
  if (isFileLocation(loc)) {
    target = { kind: 'file', path: loc.path! };
    lines = ctx.options.fileLines?.(loc.path!);
  } else {
    const cell = resolveCell(ctx.byCount, ctx.origin, ctx.payload, loc.cell);
    if (!cell) return undefined;
    target = { kind: 'cell', cellIndex: cell.index };
    lines = cell.lines;
  }
  // Only the target's current text can confirm a location: unknown text places nothing.
  if (!lines || loc.endLine > lines.length) return undefined;
  if (!sourceMatches(lines[loc.line - 1], loc.source)) return undefined; // stale: the code changed since
  const start = codePointColumnToUtf16(lines[loc.line - 1], loc.column);
  const end = codePointColumnToUtf16(lines[loc.endLine - 1], loc.endColumn);
  return {
    target,
    range: { start: { line: loc.line - 1, character: start }, end: { line: loc.endLine - 1, character: end } },
  };
}

function mapFix(ctx: Context, d: PayloadDiagnostic): MappedFix | null {
  if (!d.fix) return null;
  const advice: MappedFix = { title: d.fix.title, applicability: 'display-only', preferred: false, edits: [] };
  if (d.fix.applicability === 'display-only') return advice;
  // A notebook's outputs may only edit that notebook's cells: a fix that would write to a
  // file (any path, relative or absolute) is shown as advice, never applied.
  if (d.fix.edits.some((e) => isFileLocation(e.location))) return advice;
  const edits: MappedEdit[] = [];
  for (const edit of d.fix.edits) {
    const location = mapLocation(ctx, edit.location);
    if (!location || location.target.kind !== 'cell') return null; // one stale edit makes the whole fix unsafe to apply
    edits.push({ location, newText: edit.newText });
  }
  if (!edits.length) return null;
  return {
    title: d.fix.title,
    applicability: d.fix.applicability,
    preferred: d.fix.applicability === 'safe',
    edits,
  };
}

function ignoreEdit(origin: CellModel, code: string): MappedEdit | null {
  const first = origin.lines[0] ?? '';
  const newText = withIgnoredCode(first, code);
  if (newText === null) return null;
  return {
    location: {
      target: { kind: 'cell', cellIndex: origin.index },
      range: { start: { line: 0, character: 0 }, end: { line: 0, character: first.length } },
    },
    newText,
  };
}

function locationKey(loc: MappedLocation): string {
  const t = loc.target.kind === 'cell' ? `cell:${loc.target.cellIndex}` : `file:${loc.target.path}`;
  const r = loc.range;
  return `${t}@${r.start.line}:${r.start.character}-${r.end.line}:${r.end.character}`;
}

/**
 * All diagnostics a notebook's outputs currently support, deduplicated, in cell order, at
 * most `MAP_LIMITS.maxDiagnosticsPerNotebook` of them. Diagnostics whose code the origin
 * cell's `%%gradwatch` line ignores, that are below the minimum severity, or whose flagged
 * text changed, are left out.
 */
export function mapNotebook(cells: CellModel[], options: MapOptions): MappedDiagnostic[] {
  const seen = new Set<string>();
  const out: MappedDiagnostic[] = [];
  const byCount = cellsByCount(cells);
  let examined = 0;
  for (const origin of cells) {
    if (!origin.payloads.length) continue;
    const ignored = ignoredCodes(origin.lines[0] ?? '');
    for (const payload of origin.payloads) {
      const ctx: Context = { byCount, origin, payload, options };
      for (const d of payload.diagnostics) {
        if (out.length >= MAP_LIMITS.maxDiagnosticsPerNotebook || ++examined > MAP_LIMITS.maxDiagnosticsExamined) return out;
        if (ignored.has(d.code) || !meetsSeverity(d.severity, options.minimumSeverity)) continue;
        const location: MappedLocation | undefined = d.location
          ? mapLocation(ctx, d.location)
          : // No location: pin it to the `%%gradwatch` line of the cell that reported it.
            {
              target: { kind: 'cell', cellIndex: origin.index },
              range: { start: { line: 0, character: 0 }, end: { line: 0, character: (origin.lines[0] ?? '').length } },
            };
        if (!location) continue;
        const key = `${d.code}|${locationKey(location)}|${d.message}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const related: MappedDiagnostic['related'] = [];
        for (const r of d.related) {
          if (related.length >= MAP_LIMITS.maxRelatedShown) break;
          const loc = mapLocation(ctx, r.location);
          if (loc) related.push({ location: loc, message: r.message });
        }
        out.push({
          key,
          code: d.code,
          name: d.name,
          severity: d.severity,
          message: d.message,
          help: d.help,
          url: d.url,
          location,
          related,
          fix: mapFix(ctx, d),
          originCellIndex: origin.index,
          ignoreEdit: ignoreEdit(origin, d.code),
        });
      }
    }
  }
  return out;
}
