// The HTML report in a real JupyterLab: opens the seed notebook in Debian's Chromium (through
// playwright-core), runs its cells one by one with Shift+Enter as a user does (Run All would stop
// at program 1's RuntimeError), checks the report by its DOM and screenshots it in the light and
// dark themes. scripts/e2e/jupyterlab.sh starts the server and calls this.
//
// Usage: node tests/e2e/jupyterlab/run_jupyterlab.mjs --url http://127.0.0.1:PORT --token T
//          --notebook seed.ipynb --artifacts DIR
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
for (const required of ['url', 'token', 'notebook', 'artifacts']) {
  if (!args[required]) throw new Error(`missing --${required}`);
}
const ARTIFACTS = path.resolve(args.artifacts);
const TOTAL_TIMEOUT_MS = 4 * 60 * 1000;
const log = (...a) => console.log('[jupyterlab e2e]', ...a);

const watchdog = setTimeout(() => {
  console.error(`[jupyterlab e2e] gave up after ${TOTAL_TIMEOUT_MS / 1000}s`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

async function waitFor(condition, what, timeoutMs = 90000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await condition()) return;
    } catch {
      /* not up yet */
    }
    if (Date.now() > until) throw new Error(`waited ${timeoutMs / 1000}s for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The texts and attributes of one cell's gradwatch report, read from the page. */
function readReport(cell) {
  return cell.evaluate((node) => {
    const report = node.querySelector('.jp-OutputArea .gradwatch-report');
    const quiet = node.querySelector('.jp-OutputArea div.gradwatch');
    const outputs = [...node.querySelectorAll('.jp-OutputArea-output')].map((o) => `${o.dataset.mimeType}: ${o.textContent.slice(0, 300)}`);
    if (!report) return { quiet: quiet ? quiet.textContent : null, outputs };
    const style = getComputedStyle(report);
    return {
      summary: report.querySelector('.gradwatch-summary').textContent,
      diagnostics: [...report.querySelectorAll('.gradwatch-diagnostic')].map((d) => {
        const badge = d.querySelector('.gradwatch-badge');
        const fix = d.querySelector('.gradwatch-fix');
        const preview = fix.querySelector('.gradwatch-preview');
        return {
          badge: badge.textContent,
          badgeBackground: getComputedStyle(badge).backgroundColor,
          code: d.querySelector('a.gradwatch-code').textContent,
          href: d.querySelector('a.gradwatch-code').getAttribute('href'),
          where: d.querySelector('.gradwatch-head .gradwatch-where').textContent,
          message: d.querySelector('.gradwatch-message').textContent,
          messageCode: [...d.querySelectorAll('.gradwatch-message code')].map((c) => c.textContent),
          help: d.querySelector(':scope > .gradwatch-help')?.textContent ?? null,
          marked: d.querySelector(':scope > pre.gradwatch-source mark.gradwatch-span').textContent,
          source: d.querySelector(':scope > pre.gradwatch-source').textContent,
          related: [...d.querySelectorAll('.gradwatch-related')].map((r) => r.textContent),
          fix: fix.textContent.slice(0, fix.textContent.length - (preview ? preview.textContent.length : 0)),
          preview: preview ? preview.textContent : null,
          removed: [...fix.querySelectorAll('del')].map((x) => x.textContent),
          inserted: [...fix.querySelectorAll('ins')].map((x) => x.textContent),
        };
      }),
      textAlign: style.textAlign,
      color: style.color,
      themeText: getComputedStyle(document.body).getPropertyValue('--jp-content-font-color1').trim(),
      scripts: report.querySelectorAll('script').length,
    };
  });
}

async function runCells(page) {
  const cells = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell');
  await cells.nth(3).waitFor({ state: 'attached', timeout: 60000 });
  const count = await cells.count();
  assert.equal(count, 4, 'the seed notebook has 4 code cells');
  // a cell run while the page is still connecting to the kernel is dropped (and the toolbar says
  // "idle" before it connects): wait until the server sees the page's connection
  await waitFor(async () => {
    const kernels = await (await fetch(`${args.url}/api/kernels?token=${args.token}`)).json();
    return kernels.some((k) => k.connections > 0 && k.execution_state === 'idle');
  }, 'the kernel to start and the page to connect to it');
  await page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]')
    .waitFor({ state: 'attached', timeout: 60000 });
  await cells.nth(0).locator('.jp-InputArea-editor').click();
  for (let i = 0; i < count; i++) {
    await page.keyboard.press('Shift+Enter');
    const prompt = cells.nth(i).locator('.jp-InputArea-prompt');
    // [n]: once the kernel has run it; [*]: while queued or running
    await page.waitForFunction((node) => /^\[\d+\]:$/.test(node.textContent.trim()), await prompt.elementHandle(), {
      timeout: 120000,
    });
    log(`cell ${i + 1} ran: ${(await prompt.textContent()).trim()}`);
  }
  return cells;
}

function checkReports(light, clean, detach) {
  assert.equal(light.summary, 'gradwatch: 2 problem(s)');
  assert.equal(light.scripts, 0);
  assert.equal(light.textAlign, 'left');
  const [w, b] = light.diagnostics;
  assert.deepEqual(
    { badge: w.badge, code: w.code, where: w.where, marked: w.marked },
    { badge: 'error', code: 'GW001', where: 'cell [2], line 9, col 5', marked: 'torch.randn(1, 1)' },
  );
  assert.match(w.href, /\/GW001\.md$/);
  assert.deepEqual(w.source.split('\n'), ['9 | w = torch.randn(1, 1)', '  |     ^^^^^^^^^^^^^^^^^']);
  assert.ok(w.messageCode.includes('w') && w.messageCode.includes('requires_grad=True'), w.messageCode.join(','));
  assert.ok(!w.message.includes('`'), 'backticks render as code');
  // the short message, and the help line under the source (issue 13, section 2)
  assert.equal(w.message, 'w is created without requires_grad=True');
  assert.equal(w.help, 'help: No gradient can reach it, so optimizer never updates it: create it with requires_grad=True.');
  assert.ok(w.related.some((r) => r.startsWith('cell [2], line 14, col 13: w is given to optimizer here')), w.related);
  assert.equal(w.fix, 'safe fix: Add requires_grad=True');
  assert.equal(w.preview, '9 | w = torch.randn(1, 1, requires_grad=True)');
  assert.deepEqual([w.removed, w.inserted], [[], [', requires_grad=True']]);
  assert.equal(b.where, 'cell [2], line 10, col 5');
  assert.equal(clean.quiet, 'gradwatch: no problems found');
  const [cut] = detach.diagnostics;
  assert.deepEqual(
    { code: cut.code, where: cut.where, marked: cut.marked, fix: cut.fix },
    { code: 'GW002', where: 'cell [4], line 29, col 23', marked: 'y_pred.detach()', fix: 'fix that changes behaviour: Use y_pred instead' },
  );
  assert.deepEqual([cut.removed, cut.inserted], [['y_pred.detach()'], ['y_pred']]);
}

async function setTheme(page, name) {
  await page.locator('.lm-MenuBar-itemLabel', { hasText: /^Settings$/ }).click();
  await page.locator('.lm-Menu-itemLabel', { hasText: /^Theme$/ }).click();
  await page.locator('.lm-Menu-itemLabel', { hasText: new RegExp(`^${name}$`) }).click();
  await page.waitForFunction((theme) => document.body.dataset.jpThemeName === theme, name, { timeout: 30000 });
  await page.waitForTimeout(500); // the theme's stylesheet has applied once its name is set; let it paint
}

async function screenshot(cell, file) {
  const output = cell.locator('.jp-OutputArea-child', { has: cell.page().locator('.gradwatch-report') });
  await output.scrollIntoViewIfNeeded();
  await output.screenshot({ path: path.join(ARTIFACTS, file) });
  log(`screenshot ${file}`);
}

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await waitFor(async () => (await fetch(`${args.url}/api/status?token=${args.token}`)).ok, `JupyterLab at ${args.url}`);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
  try {
    page.on('pageerror', (error) => log('page error:', error.message));
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') log(`console ${message.type()}:`, message.text());
    });
    await page.goto(`${args.url}/lab/tree/${args.notebook}?token=${args.token}`);
    await page.locator('body[data-jp-theme-name]').waitFor({ state: 'attached', timeout: 60000 });
    const cells = await runCells(page);
    const light = await readReport(cells.nth(1));
    const clean = await readReport(cells.nth(2));
    const detach = await readReport(cells.nth(3));
    fs.writeFileSync(path.join(ARTIFACTS, 'report-light.json'), JSON.stringify({ light, clean, detach }, null, 2));
    checkReports(light, clean, detach);
    await screenshot(cells.nth(1), 'report-light.png');

    await setTheme(page, 'JupyterLab Dark');
    const dark = await readReport(cells.nth(1));
    fs.writeFileSync(path.join(ARTIFACTS, 'report-dark.json'), JSON.stringify(dark, null, 2));
    checkReports(dark, clean, detach);
    // theme-aware: the report's text takes each theme's colour, and the colours differ
    assert.notEqual(light.color, dark.color);
    for (const theme of [light, dark]) {
      const probe = await page.evaluate((value) => {
        const span = document.createElement('span');
        span.style.color = value;
        document.body.appendChild(span);
        const rgb = getComputedStyle(span).color;
        span.remove();
        return rgb;
      }, theme.themeText);
      assert.equal(theme.color, probe, `report text follows --jp-content-font-color1 (${theme.themeText})`);
    }
    await screenshot(cells.nth(1), 'report-dark.png');
    log('passed: the report in cells [2], [3], [4], light and dark');
  } catch (error) {
    await page.screenshot({ path: path.join(ARTIFACTS, 'failure.png') }).catch(() => {});
    throw error;
  } finally {
    await browser.close();
    clearTimeout(watchdog);
  }
}

main().catch((error) => {
  console.error('[jupyterlab e2e] FAILED:', error && error.stack ? error.stack : error);
  process.exit(1);
});
