// Maps validated payloads found in a notebook's outputs to plain, editor-shaped objects:
// which cell (or file) each diagnostic lands in, its 0-based UTF-16 range, and which
// fixes still apply. Decides nothing about PyTorch: the payload already says what is
// wrong. Pure: no `vscode` import.

import { codePointColumnToUtf16 } from './positions';
import { ignoredCodes, withIgnoredCode } from './magic';
import { Applicability, Location, Payload, PayloadDiagnostic, Severity } from './payload';

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
  applicability: Applicability;
  /** Only "safe" fixes are offered as the preferred quick fix. */
  preferred: boolean;
  /** Empty for display-only fixes: they are advice, not edits. */
  edits: MappedEdit[];
}

export interface MappedDiagnostic {
  /** Identity used to drop duplicates (same output seen twice, or re-published). */
  key: string;
  code: string;
  name: string;
  severity: Severity;
  message: string;
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
  /** Current lines of a file named by a `path` location, if the editor has it open. */
  fileLines?: (path: string) => string[] | undefined;
}

const SEVERITY_RANK: Record<Severity, number> = { error: 3, warning: 2, info: 1 };

export function meetsSeverity(severity: Severity, minimum: Severity): boolean {
  return SEVERITY_RANK[severity] >= SEVERITY_RANK[minimum];
}

/**
 * The cell a location's execution count refers to. The origin cell wins when it carries
 * that count; otherwise the closest earlier cell with that count (after a kernel restart
 * counts repeat, and code that ran before the diagnosing cell sits above it), then any.
 */
function resolveCell(cells: CellModel[], origin: CellModel, payload: Payload, count: number | null): CellModel | undefined {
  if (count === null) return origin;
  if (origin.executionOrder === count) return origin;
  if (origin.executionOrder === undefined && payload.executionCount === count) return origin;
  const matches = cells.filter((c) => c.executionOrder === count);
  const earlier = matches.filter((c) => c.index < origin.index);
  return earlier.length ? earlier[earlier.length - 1] : matches[0];
}

interface Context {
  cells: CellModel[];
  origin: CellModel;
  payload: Payload;
  options: MapOptions;
}

/**
 * Resolves a payload location to a target and range, or undefined when it cannot be
 * placed or is stale (the line no longer reads as it did when diagnosed).
 */
function mapLocation(ctx: Context, loc: Location): MappedLocation | undefined {
  let target: Target;
  let lines: string[] | undefined;
  if (loc.path !== null && loc.cell === null) {
    target = { kind: 'file', path: loc.path };
    lines = ctx.options.fileLines?.(loc.path);
  } else {
    const cell = resolveCell(ctx.cells, ctx.origin, ctx.payload, loc.cell);
    if (!cell) return undefined;
    target = { kind: 'cell', cellIndex: cell.index };
    lines = cell.lines;
  }
  let start: number;
  let end: number;
  if (lines) {
    if (loc.endLine > lines.length) return undefined;
    if (lines[loc.line - 1] !== loc.source) return undefined; // stale: the code changed since
    start = codePointColumnToUtf16(lines[loc.line - 1], loc.column);
    end = codePointColumnToUtf16(lines[loc.endLine - 1], loc.endColumn);
  } else {
    // A file the editor does not have open: `source` is the best text we have for line L.
    start = codePointColumnToUtf16(loc.source, loc.column);
    end = loc.endLine === loc.line ? codePointColumnToUtf16(loc.source, loc.endColumn) : loc.endColumn - 1;
  }
  return {
    target,
    range: { start: { line: loc.line - 1, character: start }, end: { line: loc.endLine - 1, character: end } },
  };
}

function mapFix(ctx: Context, d: PayloadDiagnostic): MappedFix | null {
  if (!d.fix) return null;
  const edits: MappedEdit[] = [];
  if (d.fix.applicability !== 'display-only') {
    for (const edit of d.fix.edits) {
      const location = mapLocation(ctx, edit.location);
      if (!location) return null; // one stale edit makes the whole fix unsafe to apply
      edits.push({ location, newText: edit.newText });
    }
    if (!edits.length) return null;
  }
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
 * All diagnostics a notebook's outputs currently support, deduplicated, in cell order.
 * Diagnostics whose code the origin cell's `%%gradwatch` line ignores, that are below
 * the minimum severity, or whose flagged text changed, are left out.
 */
export function mapNotebook(cells: CellModel[], options: MapOptions): MappedDiagnostic[] {
  const seen = new Set<string>();
  const out: MappedDiagnostic[] = [];
  for (const origin of cells) {
    if (!origin.payloads.length) continue;
    const ignored = ignoredCodes(origin.lines[0] ?? '');
    for (const payload of origin.payloads) {
      const ctx: Context = { cells, origin, payload, options };
      for (const d of payload.diagnostics) {
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
          const loc = mapLocation(ctx, r.location);
          if (loc) related.push({ location: loc, message: r.message });
        }
        out.push({
          key,
          code: d.code,
          name: d.name,
          severity: d.severity,
          message: d.message,
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
