// The current text of files that payload locations name by `path`. A location in a file is
// only shown when the file's current text confirms it, so closed files are read (once, in
// the background, bounded in count) and re-read when the cached text is older than
// `maxAgeMs`. Pure: the editor side supplies how to find open documents and read files.

import { splitLines } from './positions';

export interface FileSource {
  /** The text of a document the editor has open under this key, if any (always current). */
  openText(key: string): string | undefined;
  /** The file's text from disk; undefined when it cannot or may not be read. */
  read(key: string): Promise<string | undefined>;
  now(): number;
}

export const FILE_LIMITS = {
  /** Closed files kept; a payload naming more files than this gets the rest unplaced. */
  maxFiles: 64,
  maxAgeMs: 5000,
} as const;

interface Cached {
  lines: string[] | undefined;
  at: number;
}

export class FileLines {
  private readonly cache = new Map<string, Cached>();
  private readonly pending = new Set<string>();

  /** `onChanged` runs after a background read changed what `lines` returns. */
  constructor(
    private readonly source: FileSource,
    private readonly onChanged: () => void,
  ) {}

  /** The file's lines now, or undefined while they are not known (a read is then started). */
  lines(key: string): string[] | undefined {
    const open = this.source.openText(key);
    if (open !== undefined) return splitLines(open);
    const hit = this.cache.get(key);
    if (!hit || this.source.now() - hit.at > FILE_LIMITS.maxAgeMs) this.load(key, hit);
    return hit?.lines;
  }

  /** Forget a file's cached text (it was saved, opened or closed in the editor). */
  invalidate(key: string): void {
    this.cache.delete(key);
  }

  clear(): void {
    this.cache.clear();
  }

  /** Settles when no read is in flight (for tests). */
  async idle(): Promise<void> {
    while (this.pending.size) await new Promise((resolve) => setTimeout(resolve, 1));
  }

  private load(key: string, previous: Cached | undefined): void {
    if (this.pending.has(key)) return;
    if (!previous && this.cache.size + this.pending.size >= FILE_LIMITS.maxFiles) return;
    this.pending.add(key);
    void this.source
      .read(key)
      .then(
        (text) => (text === undefined ? undefined : splitLines(text)),
        () => undefined,
      )
      .then((lines) => {
        this.pending.delete(key);
        this.cache.set(key, { lines, at: this.source.now() });
        if (!sameLines(previous?.lines, lines)) this.onChanged();
      });
  }
}

function sameLines(a: string[] | undefined, b: string[] | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  return a.every((line, i) => line === b[i]);
}
