// issue 13 section 6: the rule pages ship with the extension and only rule codes name them.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RULE_DOCS_DIR, docsCommandLink, pageNameFromPath, rulePageName } from '../../src/core/ruleDocs';
import { REPO } from './fixtures';

test('only a rule code names a page', () => {
  assert.equal(rulePageName('GW001'), 'GW001.md');
  assert.equal(rulePageName('GW115'), 'GW115.md');
  for (const bad of ['gw001', 'GW1', 'GW0001', '../GW001', 'GW001/../../x', '', 42, null, undefined]) assert.equal(rulePageName(bad), undefined, String(bad));
  assert.equal(pageNameFromPath('/GW002.md'), 'GW002.md');
  assert.equal(pageNameFromPath('GW002.md'), 'GW002.md');
  for (const bad of ['/../GW002.md', '/x/GW002.md', '/GW002.md.js', '/README.md']) assert.equal(pageNameFromPath(bad), undefined, bad);
});

test('the build bundles every rule page of docs/rules, unchanged', () => {
  const source = path.join(REPO, 'docs', 'rules');
  const bundled = path.join(REPO, ...RULE_DOCS_DIR);
  const pages = fs.readdirSync(source).filter((n) => /^GW\d{3}\.md$/.test(n)).sort();
  assert.ok(pages.includes('GW001.md') && pages.length >= 20, pages.join(','));
  assert.deepEqual(fs.readdirSync(bundled).sort(), pages);
  for (const name of pages) assert.equal(fs.readFileSync(path.join(bundled, name), 'utf8'), fs.readFileSync(path.join(source, name), 'utf8'), name);
  assert.match(fs.readFileSync(path.join(bundled, 'GW001.md'), 'utf8'), /^# GW001 requires-grad-missing\n/);
});

test('the .vsix keeps the bundled pages (.vscodeignore)', () => {
  const ignore = fs.readFileSync(path.join(REPO, '.vscodeignore'), 'utf8').split('\n');
  assert.ok(ignore.includes('!extension/out/docs/rules/GW*.md'), ignore.join('|'));
});

test('a code links to the command that opens its bundled page, with the url as fallback', () => {
  const link = docsCommandLink('GW001', 'https://x.example/GW001?a=1&b="2"');
  assert.match(link, /^command:gradwatch\.openDocumentation\?/);
  const query = link.slice(link.indexOf('?') + 1);
  assert.doesNotMatch(query, /[\s"&?#]/, 'the arguments are one encoded query');
  assert.deepEqual(JSON.parse(decodeURIComponent(query)), ['GW001', 'https://x.example/GW001?a=1&b="2"']);
  assert.deepEqual(JSON.parse(decodeURIComponent(docsCommandLink('GW002', null).split('?')[1])), ['GW002', null]);
});
