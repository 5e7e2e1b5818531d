// The current text of files named by payload locations (issue 11, item 8): open documents
// first, else the file read in the background, re-read when old, bounded in count.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { FILE_LIMITS, FileLines, FileSource } from '../../src/core/files';

function fakeSource(disk: Record<string, string | undefined>, open: Record<string, string> = {}) {
  const reads: string[] = [];
  let clock = 0;
  const source: FileSource = {
    openText: (key) => open[key],
    read: async (key) => {
      reads.push(key);
      if (key === 'boom') throw new Error('EACCES');
      return disk[key];
    },
    now: () => clock,
  };
  return { source, reads, tick: (ms: number) => (clock += ms) };
}

test('unknown until read; then the file lines, and one refresh', async () => {
  const { source, reads } = fakeSource({ '/p/train.py': 'a\nmodel = Net()\n' });
  let refreshed = 0;
  const files = new FileLines(source, () => refreshed++);
  assert.equal(files.lines('/p/train.py'), undefined);
  assert.equal(files.lines('/p/train.py'), undefined); // one read in flight, not two
  await files.idle();
  assert.deepEqual(files.lines('/p/train.py'), ['a', 'model = Net()', '']);
  assert.deepEqual(reads, ['/p/train.py']);
  assert.equal(refreshed, 1);
});

test('an open document wins and is always current', async () => {
  const { source, reads } = fakeSource({ '/p/a.py': 'on disk' }, { '/p/a.py': 'in the editor\nx' });
  const files = new FileLines(source, () => undefined);
  assert.deepEqual(files.lines('/p/a.py'), ['in the editor', 'x']);
  assert.deepEqual(reads, []);
});

test('unreadable files stay unknown; old text is re-read and refreshes only when it changed', async () => {
  const disk: Record<string, string | undefined> = { '/p/a.py': 'v1', '/etc/shadow': undefined };
  const { source, reads, tick } = fakeSource(disk);
  let refreshed = 0;
  const files = new FileLines(source, () => refreshed++);
  files.lines('/etc/shadow');
  files.lines('boom');
  files.lines('/p/a.py');
  await files.idle();
  assert.equal(files.lines('/etc/shadow'), undefined);
  assert.equal(files.lines('boom'), undefined);
  assert.deepEqual(files.lines('/p/a.py'), ['v1']);
  assert.equal(refreshed, 1);
  tick(FILE_LIMITS.maxAgeMs + 1);
  assert.deepEqual(files.lines('/p/a.py'), ['v1']); // the old text meanwhile
  await files.idle();
  assert.equal(refreshed, 1); // same text: no refresh
  disk['/p/a.py'] = 'v2';
  files.invalidate('/p/a.py');
  assert.equal(files.lines('/p/a.py'), undefined);
  await files.idle();
  assert.deepEqual(files.lines('/p/a.py'), ['v2']);
  assert.equal(refreshed, 2);
  assert.equal(reads.filter((r) => r === '/p/a.py').length, 3);
});

test('a payload naming many files gets at most FILE_LIMITS.maxFiles read', async () => {
  const { source, reads } = fakeSource({});
  const files = new FileLines(source, () => undefined);
  for (let i = 0; i < FILE_LIMITS.maxFiles * 3; i++) files.lines(`/p/f${i}.py`);
  await files.idle();
  assert.equal(reads.length, FILE_LIMITS.maxFiles);
});
