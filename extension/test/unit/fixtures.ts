// Payload builders for unit tests: raw JSON in the wire (snake_case) shape, as a kernel emits it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CellModel } from '../../src/core/mapping';
import { validatePayload } from '../../src/core/payload';
import { splitLines } from '../../src/core/positions';

export const REPO = path.resolve(__dirname, '..', '..', '..', '..');

export function seedCellText(file: string): string {
  const body = fs.readFileSync(path.join(REPO, 'examples', 'seed', file), 'utf8');
  return `%%gradwatch\n${body}`.replace(/\n$/, '');
}

export function loc(cell: number | null, line: number, column: number, endColumn: number, source: string, endLine = line) {
  return { cell, path: null as string | null, line, column, end_line: endLine, end_column: endColumn, source };
}

export function diag(over: Record<string, unknown> = {}) {
  return {
    code: 'GW001',
    name: 'requires-grad-missing',
    severity: 'error',
    message: 'w never receives a gradient.',
    location: null,
    related: [],
    fix: null,
    url: 'https://gradwatch.example/rules/GW001',
    evidence: {},
    ...over,
  };
}

export function payload(executionCount: number | null, diagnostics: unknown[]) {
  return { version: 1, tool: { name: 'gradwatch', version: '0.1.0' }, cell: { execution_count: executionCount }, diagnostics };
}

/** A CellModel whose outputs hold the given raw payloads (validated like the extension does). */
export function cell(index: number, executionOrder: number | undefined, text: string, raws: unknown[] = []): CellModel {
  return {
    index,
    executionOrder,
    lines: splitLines(text),
    payloads: raws.map((raw) => {
      const r = validatePayload(raw);
      if (!r.ok) throw new Error(r.error);
      return r.payload;
    }),
  };
}
