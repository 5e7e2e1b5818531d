// The payload counts columns in Unicode code points; VS Code counts UTF-16 code units.
// They differ for astral characters (emoji, some CJK), which take two UTF-16 units.

/** 1-based code-point column -> 0-based UTF-16 offset in `lineText`, clamped to the line's end. */
export function codePointColumnToUtf16(lineText: string, column: number): number {
  let offset = 0;
  for (let cp = 1; cp < column && offset < lineText.length; cp++) {
    const code = lineText.codePointAt(offset)!;
    offset += code > 0xffff ? 2 : 1;
  }
  return offset;
}

/** Splits cell text into lines the way the editor counts them (\n, \r\n or \r). */
export function splitLines(text: string): string[] {
  return text.split(/\r\n|\r|\n/);
}
