// Reading and editing the `%%gradwatch` line of a cell: its `--ignore` list hides codes
// for that cell (the kernel honours it on the next run; we honour it at once).

const MAGIC = /^%%gradwatch(?=\s|$)/;
// `--ignore GW001,GW002` or `--ignore=GW001`; codes are validated elsewhere.
const IGNORE_OPTION = /(--ignore(?:=|\s+))([A-Za-z0-9_,]*)/g;

export function isGradwatchMagic(firstLine: string): boolean {
  return MAGIC.test(firstLine);
}

/** Codes listed by every `--ignore` option of a `%%gradwatch` line (empty for other lines). */
export function ignoredCodes(firstLine: string): Set<string> {
  const codes = new Set<string>();
  if (!isGradwatchMagic(firstLine)) return codes;
  for (const match of firstLine.matchAll(IGNORE_OPTION)) {
    for (const code of match[2].split(',')) if (code) codes.add(code.toUpperCase());
  }
  return codes;
}

/**
 * The `%%gradwatch` line with `code` added to its first `--ignore` list (or a new
 * `--ignore code` option appended). Null when the line is not a gradwatch magic line or
 * already ignores the code.
 */
export function withIgnoredCode(firstLine: string, code: string): string | null {
  if (!isGradwatchMagic(firstLine) || ignoredCodes(firstLine).has(code)) return null;
  IGNORE_OPTION.lastIndex = 0;
  const existing = IGNORE_OPTION.exec(firstLine);
  IGNORE_OPTION.lastIndex = 0;
  if (!existing) return `${firstLine.trimEnd()} --ignore ${code}`;
  const list = existing[2].split(',').filter(Boolean).concat(code).join(',');
  const start = existing.index + existing[1].length;
  return firstLine.slice(0, start) + list + firstLine.slice(start + existing[2].length);
}
