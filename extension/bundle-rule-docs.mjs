// Copies the rule pages (docs/rules/GWxxx.md, generated from the rules' docstrings and
// checked in sync by tests/unit/test_rules_registry.py) into the extension's output, so
// "Show documentation" works offline from the installed .vsix.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const source = path.join(here, '..', 'docs', 'rules');
const target = path.join(here, 'out', 'docs', 'rules');
fs.rmSync(target, { recursive: true, force: true });
fs.mkdirSync(target, { recursive: true });
const pages = fs.readdirSync(source).filter((name) => /^GW[0-9]{3}\.md$/.test(name));
if (!pages.length) throw new Error(`no rule pages in ${source}`);
for (const name of pages) fs.copyFileSync(path.join(source, name), path.join(target, name));
