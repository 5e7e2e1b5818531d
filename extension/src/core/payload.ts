// Validation of the diagnostics payload (contract version 1, see
// kernel_ext/gradwatch/schema/diagnostics.schema.json). Outputs come from notebook files
// anyone can send, so nothing leaves this module unless its type, size and URL scheme
// were checked. Pure: no `vscode` import, so it runs in Node tests and in the renderer.

export const MIME_TYPE = 'application/vnd.gradwatch.diagnostics+json';
export const PAYLOAD_VERSION = 1;

/** Limits: the schema's, plus a lower cap on what we show (an editor is not a log viewer). */
export const LIMITS = {
  maxDiagnosticsInPayload: 1000,
  maxDiagnosticsShown: 500,
  maxRelated: 100,
  maxEdits: 100,
  maxMessage: 2000,
  maxTitle: 2000,
  maxSource: 10000,
  maxNewText: 10000,
  maxPath: 4096,
  maxUrl: 2000,
  maxName: 100,
  maxToolVersion: 64,
  maxLine: 10_000_000,
  maxColumn: 10_000_000,
  /** Bytes of one output item: bigger than any real payload, small enough to parse at once. */
  maxPayloadBytes: 8 * 1024 * 1024,
} as const;

/** What the kernel appends to a string it cut at a schema limit (U+2026). */
export const ELLIPSIS = '\u2026';

/** Length in Unicode code points, as JSON Schema's maxLength (and the kernel) count. */
export function codePointLength(value: string): number {
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < value.length) {
      const d = value.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

export type Severity = 'error' | 'warning' | 'info';
export type Applicability = 'safe' | 'unsafe' | 'display-only';

export interface Location {
  cell: number | null;
  path: string | null;
  line: number;
  column: number;
  endLine: number;
  endColumn: number;
  source: string;
}

export interface Related {
  location: Location;
  message: string;
}

export interface Edit {
  location: Location;
  newText: string;
}

export interface Fix {
  title: string;
  applicability: Applicability;
  edits: Edit[];
}

export interface PayloadDiagnostic {
  code: string;
  name: string;
  severity: Severity;
  message: string;
  /** Why it matters and what to do (optional since payload version 1 allows it; null when absent). */
  help: string | null;
  location: Location | null;
  related: Related[];
  fix: Fix | null;
  /** Only http(s) links survive validation; anything else becomes null. */
  url: string | null;
}

export interface Payload {
  toolVersion: string;
  executionCount: number | null;
  diagnostics: PayloadDiagnostic[];
}

export type ValidationResult =
  | { ok: true; payload: Payload; warnings: string[] }
  | { ok: false; error: string };

class Invalid extends Error {}

function fail(message: string): never {
  throw new Invalid(message);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(value: unknown, what: string, max: number): string {
  if (typeof value !== 'string') fail(`${what} is not a string`);
  // UTF-16 units >= code points: count code points only when the quick check fails
  if (value.length > max && (value.length > 2 * max || codePointLength(value) > max)) {
    fail(`${what} is longer than ${max} characters`);
  }
  return value;
}

function int(value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) fail(`${what} is not an integer`);
  if (value < min || value > max) fail(`${what} is out of range`);
  return value;
}

function nullableInt(value: unknown, what: string): number | null {
  return value === null ? null : int(value, what, 0, Number.MAX_SAFE_INTEGER);
}

function array(value: unknown, what: string, max: number): unknown[] {
  if (!Array.isArray(value)) fail(`${what} is not an array`);
  if (value.length > max) fail(`${what} has more than ${max} items`);
  return value;
}

/** Returns the URL if it is an absolute http(s) URL, else null (no javascript:, command:, file:...). */
export function safeHttpUrl(value: unknown): string | null {
  if (typeof value !== 'string' || value.length > LIMITS.maxUrl) return null;
  if (!/^https?:\/\//i.test(value)) return null;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? value : null;
  } catch {
    return null;
  }
}

export function validateLocation(raw: unknown, what = 'location'): Location {
  if (!isObject(raw)) fail(`${what} is not an object`);
  const path = raw.path === null || raw.path === undefined ? null : str(raw.path, `${what}.path`, LIMITS.maxPath);
  const loc: Location = {
    cell: raw.cell === undefined ? null : nullableInt(raw.cell, `${what}.cell`),
    path,
    line: int(raw.line, `${what}.line`, 1, LIMITS.maxLine),
    column: int(raw.column, `${what}.column`, 1, LIMITS.maxColumn),
    endLine: int(raw.end_line, `${what}.end_line`, 1, LIMITS.maxLine),
    endColumn: int(raw.end_column, `${what}.end_column`, 1, LIMITS.maxColumn),
    source: str(raw.source, `${what}.source`, LIMITS.maxSource),
  };
  if (loc.endLine < loc.line || (loc.endLine === loc.line && loc.endColumn < loc.column)) {
    fail(`${what} ends before it starts`);
  }
  return loc;
}

function validateFix(raw: unknown): Fix | null {
  if (raw === null) return null;
  if (!isObject(raw)) fail('fix is not an object');
  const applicability = raw.applicability;
  if (applicability !== 'safe' && applicability !== 'unsafe' && applicability !== 'display-only') {
    fail('fix.applicability is not safe, unsafe or display-only');
  }
  const edits = array(raw.edits, 'fix.edits', LIMITS.maxEdits).map((e, i) => {
    if (!isObject(e)) fail(`fix.edits[${i}] is not an object`);
    return {
      location: validateLocation(e.location, `fix.edits[${i}].location`),
      newText: str(e.new_text, `fix.edits[${i}].new_text`, LIMITS.maxNewText),
    };
  });
  return { title: str(raw.title, 'fix.title', LIMITS.maxTitle), applicability, edits };
}

function validateDiagnostic(raw: unknown, warnings: string[], index: number): PayloadDiagnostic {
  if (!isObject(raw)) fail('not an object');
  const code = str(raw.code, 'code', 5);
  if (!/^GW[0-9]{3}$/.test(code)) fail('code does not look like GW000');
  const name = str(raw.name, 'name', LIMITS.maxName);
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(name)) fail('name is not kebab-case');
  const severity = raw.severity;
  if (severity !== 'error' && severity !== 'warning' && severity !== 'info') {
    fail('severity is not error, warning or info');
  }
  const related = array(raw.related ?? [], 'related', LIMITS.maxRelated).map((r, i) => {
    if (!isObject(r)) fail(`related[${i}] is not an object`);
    return {
      location: validateLocation(r.location, `related[${i}].location`),
      message: str(r.message, `related[${i}].message`, LIMITS.maxMessage),
    };
  });
  const url = safeHttpUrl(raw.url);
  if (url === null) warnings.push(`diagnostics[${index}] (${code}): documentation link dropped (not an http(s) URL)`);
  if (raw.evidence !== undefined && !isObject(raw.evidence)) fail('evidence is not an object');
  return {
    code,
    name,
    severity,
    message: str(raw.message, 'message', LIMITS.maxMessage),
    help: raw.help === undefined || raw.help === null ? null : str(raw.help, 'help', LIMITS.maxMessage),
    location: raw.location === null ? null : validateLocation(raw.location),
    related,
    fix: validateFix(raw.fix ?? null),
    url,
  };
}

/**
 * Checks a parsed payload. The envelope must be right or the whole payload is refused;
 * a malformed diagnostic is dropped on its own (with a warning) so one bad entry does
 * not hide the others. Unknown extra keys are ignored.
 */
export function validatePayload(raw: unknown): ValidationResult {
  const warnings: string[] = [];
  try {
    if (!isObject(raw)) fail('payload is not an object');
    if (raw.version !== PAYLOAD_VERSION) fail(`unsupported payload version ${JSON.stringify(raw.version)?.slice(0, 20)}`);
    if (!isObject(raw.tool) || raw.tool.name !== 'gradwatch') fail('tool.name is not "gradwatch"');
    const toolVersion = str(raw.tool.version, 'tool.version', LIMITS.maxToolVersion);
    if (!isObject(raw.cell)) fail('cell is not an object');
    const executionCount = nullableInt(raw.cell.execution_count, 'cell.execution_count');
    const items = array(raw.diagnostics, 'diagnostics', LIMITS.maxDiagnosticsInPayload);
    const diagnostics: PayloadDiagnostic[] = [];
    items.forEach((item, i) => {
      if (diagnostics.length >= LIMITS.maxDiagnosticsShown) return;
      try {
        diagnostics.push(validateDiagnostic(item, warnings, i));
      } catch (e) {
        if (!(e instanceof Invalid)) throw e;
        warnings.push(`diagnostics[${i}] dropped: ${e.message}`);
      }
    });
    if (items.length > LIMITS.maxDiagnosticsShown) {
      warnings.push(`only the first ${LIMITS.maxDiagnosticsShown} of ${items.length} diagnostics are shown`);
    }
    return { ok: true, payload: { toolVersion, executionCount, diagnostics }, warnings };
  } catch (e) {
    if (!(e instanceof Invalid)) throw e;
    return { ok: false, error: e.message };
  }
}
