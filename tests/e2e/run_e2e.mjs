// End-to-end driver: installs the .vsix into code-server (a real VS Code 1.100.3), opens
// it in Debian's Chromium through playwright-core, and runs the extension-host mocha suite
// (tests/e2e/host) with the extensionDevelopmentPath/extensionTestsPath payload. The suite
// asks this driver, through files, for the checks only the page can do: the Problems
// panel's rows, the status bar, the renderer's table, and the screenshot.
//
// The live suite (tests/e2e/host/suite/live.test.js) runs cells in a real ipykernel through a
// test-only notebook controller and tests/e2e/kernel_bridge.py, on --python.
//
// Usage: node tests/e2e/run_e2e.mjs --vsix gradwatch.vsix --notebook seed.ipynb
//          --code-server PATH --artifacts DIR [--python .venv/bin/python]
// Env: GRADWATCH_E2E_GREP=regex runs a subset of the tests; GRADWATCH_E2E_VERBOSE=1 prints the
// workbench's whole log, not only its errors.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
for (const required of ['vsix', 'notebook', 'code-server', 'artifacts']) {
  if (!args[required]) throw new Error(`missing --${required}`);
}
const ARTIFACTS = path.resolve(args.artifacts);
const PYTHON = path.resolve(args.python ?? path.join(REPO, '.venv', 'bin', 'python'));
const RUN = path.join(ARTIFACTS, 'e2e-run');
const TOTAL_TIMEOUT_MS = 10 * 60 * 1000;

/** What the page must show (cell-relative, 1-based, as VS Code's Problems panel prints). */
const EXPECTED_PROBLEMS = [
  { code: 'GW001', line: 9, col: 5 },
  { code: 'GW001', line: 10, col: 5 },
  { code: 'GW002', line: 29, col: 23 },
];

const EXPECTED_RENDERED = ['error GW001 cell [2], line 10, col 5', 'error GW001 cell [2], line 9, col 5', 'error GW002 cell [4], line 29, col 23'];

const log = (...a) => console.log('[e2e]', ...a);
let serverGroup; // code-server's process group, killed on every way out

function stopServer() {
  try {
    if (serverGroup) process.kill(-serverGroup, 'SIGTERM');
  } catch {
    /* already gone */
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url, timeoutMs) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      const res = await fetch(url);
      if (res.status < 500) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`code-server did not answer at ${url}`);
}

function prepare() {
  fs.rmSync(RUN, { recursive: true, force: true });
  const dirs = {};
  for (const name of ['workspace', 'user-data', 'extensions', 'xdg-config', 'xdg-data', 'chrome', 'sync']) {
    dirs[name] = path.join(RUN, name);
    fs.mkdirSync(dirs[name], { recursive: true });
  }
  fs.copyFileSync(args.notebook, path.join(dirs.workspace, 'seed.ipynb'));
  fs.copyFileSync(path.join(HERE, 'fixtures', 'hostile.ipynb'), path.join(dirs.workspace, 'hostile.ipynb'));
  fs.mkdirSync(path.join(dirs['user-data'], 'User'), { recursive: true });
  fs.writeFileSync(
    path.join(dirs['user-data'], 'User', 'settings.json'),
    JSON.stringify(
      {
        'workbench.startupEditor': 'none',
        'workbench.tips.enabled': false,
        'workbench.enableExperiments': false,
        'telemetry.telemetryLevel': 'off',
        'security.workspace.trust.enabled': false,
        'extensions.autoUpdate': false,
        'extensions.autoCheckUpdates': false,
        'extensions.ignoreRecommendations': true,
        'update.mode': 'none',
        'remote.autoForwardPorts': false,
        'files.autoSave': 'off',
        'files.refactoring.autoSave': false,
        // The workspace lies inside this repository: no "open the parent git repo?" toast.
        'git.enabled': false,
        'git.openRepositoryInParentFolders': 'never',
        'chat.disableAIFeatures': true,
        'workbench.colorTheme': 'Default Dark Modern',
        // The live suite types a whole program at once: the editor must take it verbatim, not
        // indent each new line again or close brackets the text already closes.
        'editor.autoIndent': 'none',
        'editor.autoClosingBrackets': 'never',
        'editor.autoClosingQuotes': 'never',
        'editor.autoSurround': 'never',
        'editor.formatOnType': false,
        'editor.acceptSuggestionOnEnter': 'off',
        'editor.quickSuggestions': { other: 'off', comments: 'off', strings: 'off' },
        'editor.suggestOnTriggerCharacters': false,
      },
      null,
      2,
    ),
  );
  return dirs;
}

function codeServerEnv(dirs) {
  return {
    ...process.env,
    XDG_CONFIG_HOME: dirs['xdg-config'],
    XDG_DATA_HOME: dirs['xdg-data'],
    // No extension gallery: the test needs no marketplace and must not look one up.
    EXTENSIONS_GALLERY: '{}',
    GRADWATCH_E2E_SYNC: dirs.sync,
    // The live suite's kernel bridge runs on this interpreter (the project's, with gradwatch and torch).
    GRADWATCH_E2E_PYTHON: PYTHON,
    GRADWATCH_E2E_EXTENSIONS_DIR: dirs.extensions,
  };
}

function installVsix(dirs) {
  const r = spawnSync(
    args['code-server'],
    ['--install-extension', path.resolve(args.vsix), '--extensions-dir', dirs.extensions, '--user-data-dir', dirs['user-data']],
    { env: codeServerEnv(dirs), encoding: 'utf8' },
  );
  log(`install-extension: ${(r.stdout + r.stderr).trim().split('\n').slice(-2).join(' | ')}`);
  if (r.status !== 0) throw new Error(`--install-extension failed with ${r.status}`);
  const installed = fs.readdirSync(dirs.extensions).filter((n) => n.startsWith('gradwatch.gradwatch-'));
  if (installed.length !== 1) throw new Error(`expected one installed gradwatch extension, found ${installed}`);
}

function startCodeServer(dirs, port) {
  const child = spawn(
    args['code-server'],
    [
      '--bind-addr', `127.0.0.1:${port}`,
      '--auth', 'none',
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      '--user-data-dir', dirs['user-data'],
      '--extensions-dir', dirs.extensions,
      '--config', path.join(RUN, 'code-server.yaml'),
      dirs.workspace,
    ],
    // Own process group (setsid): killing it takes code-server's watchers and extension host along.
    { env: codeServerEnv(dirs), detached: true, stdio: ['ignore', fs.openSync(path.join(RUN, 'code-server.log'), 'a'), fs.openSync(path.join(RUN, 'code-server.log'), 'a')] },
  );
  return child;
}

/** Problems panel rows, status bar and renderer table, as the page shows them. */
async function pageChecks(page) {
  const failures = [];
  const details = {};
  // Problems panel: one marker row per diagnostic, with its code and [Ln, Col].
  const rowsLocator = page.locator('.markers-panel .monaco-list-row');
  await rowsLocator.first().waitFor({ timeout: 30000 }).catch(() => {});
  const rows = await rowsLocator.evaluateAll((els) => els.map((e) => ({ text: e.textContent, aria: e.getAttribute('aria-label') || '' })));
  details.problemsRows = rows;
  const markerRows = rows.filter((r) => /gradwatch/.test(r.text));
  const seen = markerRows
    .map((r) => {
      const m = /(GW\d{3}).*\[Ln (\d+), Col (\d+)\]/.exec(r.text);
      return m && { code: m[1], line: Number(m[2]), col: Number(m[3]) };
    })
    .filter(Boolean)
    .sort((a, b) => a.code.localeCompare(b.code) || a.line - b.line);
  if (JSON.stringify(seen) !== JSON.stringify(EXPECTED_PROBLEMS)) {
    failures.push(`Problems panel rows ${JSON.stringify(seen)} != ${JSON.stringify(EXPECTED_PROBLEMS)}`);
  }
  // The rows sit under the notebook's name (cells are grouped per notebook).
  if (!rows.some((r) => /seed\.ipynb/.test(r.text))) failures.push('no Problems row names seed.ipynb');

  const status = await page.locator('.statusbar-item', { hasText: 'gradwatch:' }).first().textContent({ timeout: 10000 }).catch(() => null);
  details.statusBar = status;
  if (!status || !/gradwatch: 3\b/.test(status)) failures.push(`status bar shows ${JSON.stringify(status)}, expected "gradwatch: 3"`);

  // The renderer draws inside the notebook's output webview (nested iframes); outputs
  // render asynchronously, so poll for a while.
  let rendered = [];
  for (let tries = 0; tries < 40; tries++) {
    rendered = (await rendererRows(page)).map(([sev, code, , where]) => `${sev} ${code} ${where}`).sort();
    if (JSON.stringify(rendered) === JSON.stringify(EXPECTED_RENDERED)) break;
    await page.waitForTimeout(250);
  }
  details.rendererRows = rendered;
  if (JSON.stringify(rendered) !== JSON.stringify(EXPECTED_RENDERED)) {
    failures.push(`renderer rows ${JSON.stringify(rendered)} != ${JSON.stringify(EXPECTED_RENDERED)}`);
  }
  return { failures, details };
}

/** Data rows of every gradwatch table the renderer drew, across all frames. */
async function rendererRows(page) {
  const rows = [];
  for (const frame of page.frames()) {
    const found = await frame
      .evaluate(() => [...document.querySelectorAll('.gradwatch table tr')].filter((tr) => tr.querySelector('td')).map((tr) => [...tr.children].map((td) => td.textContent)))
      .catch(() => []);
    rows.push(...found);
  }
  return rows;
}

/**
 * Program 1's output sits below its 42-line cell: grow the window until the renderer's
 * table for it is on screen (scrolling the notebook from outside is not reliable), then
 * take the screenshot and restore the window.
 */
async function rendererScreenshot(page) {
  const normal = page.viewportSize();
  try {
    for (const height of [1000, 1400, 1800, 2200]) {
      await page.setViewportSize({ width: normal.width, height });
      for (let tries = 0; tries < 10; tries++) {
        await page.waitForTimeout(300);
        for (const frame of page.frames()) {
          const table = frame.locator('.gradwatch table', { hasText: 'line 9, col 5' });
          if (!(await table.count().catch(() => 0))) continue;
          const box = await table.first().boundingBox().catch(() => null);
          if (box && box.height > 0 && box.y >= 0 && box.y + box.height <= height) {
            await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-renderer.png') });
            return { failures: [], details: { rendererTableAt: box, height } };
          }
        }
      }
    }
    await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-renderer.png') });
    return { failures: ['the renderer table for program 1 never came into view'], details: {} };
  } finally {
    await page.setViewportSize(normal);
  }
}

/**
 * hostile.ipynb in the page: payload HTML shows as text, no element or link comes from it,
 * malformed payloads render a one-line notice, and nothing pops up.
 */
async function hostilePage(page) {
  const failures = [];
  const EXPECTED = [
    'gradwatch: 2 problem(s)',
    'gradwatch: 1 problem(s)',
    'gradwatch: output not shown (unsupported payload version 2)',
    'gradwatch: output not shown (payload is not an object)',
  ];
  let seen = {};
  for (let tries = 0; tries < 40; tries++) {
    seen = { summaries: [], cells: [], helps: [], imgs: 0, hrefs: [] };
    for (const frame of page.frames()) {
      const found = await frame
        .evaluate(() => {
          const roots = [...document.querySelectorAll('.gradwatch')];
          return {
            summaries: roots.map((r) => r.querySelector('.summary')?.textContent ?? ''),
            cells: roots.flatMap((r) => [...r.querySelectorAll('td')].map((td) => td.firstChild?.textContent ?? '')),
            helps: roots.flatMap((r) => [...r.querySelectorAll('.help')].map((e) => e.textContent)),
            bolds: roots.reduce((n, r) => n + r.querySelectorAll('b').length, 0),
            imgs: roots.reduce((n, r) => n + r.querySelectorAll('img, script, iframe').length, 0),
            hrefs: roots.flatMap((r) => [...r.querySelectorAll('a[href]')].map((a) => a.getAttribute('href')).filter((h) => !/^https?:\/\//.test(h))),
          };
        })
        .catch(() => null);
      if (!found) continue;
      seen.summaries.push(...found.summaries);
      seen.cells.push(...found.cells);
      seen.helps.push(...found.helps);
      seen.imgs += found.bolds;
      seen.imgs += found.imgs;
      seen.hrefs.push(...found.hrefs);
    }
    if (EXPECTED.every((e) => seen.summaries.includes(e))) break;
    await page.waitForTimeout(250);
  }
  for (const e of EXPECTED) if (!seen.summaries.includes(e)) failures.push(`renderer summary "${e}" not shown (saw ${JSON.stringify(seen.summaries)})`);
  const html = '<img src=x onerror=alert(1)> **bold** [run](command:workbench.action.terminal.new)';
  if (!seen.cells.includes(html)) failures.push('the HTML message is not shown verbatim as text');
  if (!seen.helps.includes('<b>no gradient</b> reaches ŵ: use it without `.detach()`')) failures.push(`the help line is not shown as text (saw ${JSON.stringify(seen.helps)})`);
  if (seen.imgs) failures.push(`${seen.imgs} element(s) created from payload HTML`);
  if (seen.hrefs.length) failures.push(`links rendered from non-http(s) URLs: ${JSON.stringify(seen.hrefs)}`);
  const toasts = await page.locator('.notifications-toasts .notification-toast').count();
  if (toasts) failures.push(`${toasts} notification toast(s) shown`);
  return { failures, details: seen };
}

/** The Markdown preview (a webview, nested iframes) shows a rule page with this heading. */
async function rulePage(page, heading) {
  let headings = [];
  for (let tries = 0; tries < 60; tries++) {
    headings = [];
    for (const frame of page.frames()) {
      headings.push(...(await frame.evaluate(() => [...document.querySelectorAll('.markdown-body h1, body h1')].map((h) => h.textContent.trim())).catch(() => [])));
    }
    if (headings.includes(heading)) {
      await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-rule-page.png') });
      return { failures: [], details: { headings } };
    }
    await page.waitForTimeout(250);
  }
  return { failures: [`no rule page headed "${heading}" shown (saw ${JSON.stringify(headings)})`], details: {} };
}

/** Some renderer output in the notebook shows this summary line (outputs render asynchronously). */
async function rendererSummary(page, text) {
  let summaries = [];
  for (let tries = 0; tries < 80; tries++) {
    summaries = [];
    for (const frame of page.frames()) {
      summaries.push(...(await frame.evaluate(() => [...document.querySelectorAll('.gradwatch .summary')].map((e) => e.textContent)).catch(() => [])));
    }
    if (summaries.includes(text)) return { failures: [], details: { summaries } };
    await page.waitForTimeout(250);
  }
  return { failures: [`no renderer output says "${text}" (saw ${JSON.stringify(summaries)})`], details: {} };
}

/** Clicks a diagnostic's code link (e.g. "GW001") in the Problems panel. */
async function clickProblemsCode(page, code) {
  const link = page.locator('.markers-panel .monaco-list-row a', { hasText: code }).first();
  await link.waitFor({ timeout: 20000 });
  await link.click();
  return { failures: [], details: { clicked: code } };
}

/** Clicks the renderer's reveal link for the given location text. */
async function clickReveal(page, text) {
  for (let tries = 0; tries < 40; tries++) {
    for (const frame of page.frames()) {
      const link = frame.locator('.gradwatch a.reveal', { hasText: text });
      if ((await link.count().catch(() => 0)) > 0) {
        // The output may sit below the fold of the notebook's own scroll area, which
        // Playwright cannot scroll from inside the webview: fire the click on the link itself.
        await link.first().dispatchEvent('click');
        return { failures: [], details: { clicked: text } };
      }
    }
    await page.waitForTimeout(250);
  }
  return { failures: [`no reveal link "${text}" in the renderer output`], details: {} };
}

async function main() {
  const deadline = setTimeout(() => {
    console.error('[e2e] timed out');
    stopServer();
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  const dirs = prepare();
  installVsix(dirs);
  const port = await freePort();
  serverGroup = startCodeServer(dirs, port).pid;
  let context;
  let exitCode = 1;
  try {
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, 60000);
    log(`code-server up on ${port}`);
    const remote = (p) => `vscode-remote://127.0.0.1:${port}${p}`;
    const payload = [
      ['extensionDevelopmentPath', remote(path.join(HERE, 'host'))],
      ['extensionTestsPath', remote(path.join(HERE, 'host', 'suite', 'index.js'))],
    ];
    const url = `http://127.0.0.1:${port}/?folder=${encodeURIComponent(dirs.workspace)}&payload=${encodeURIComponent(JSON.stringify(payload))}`;

    context = await chromium.launchPersistentContext(dirs.chrome, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      viewport: { width: 1600, height: 1000 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = context.pages()[0] ?? (await context.newPage());
    let resolveExit;
    const exited = new Promise((r) => (resolveExit = r));
    await page.exposeFunction('codeAutomationExit', (code) => resolveExit(code));
    await page.exposeFunction('codeAutomationLog', (type, argsList) => {
      if (type === 'error' || process.env.GRADWATCH_E2E_VERBOSE) console.error('[vscode]', type, ...(argsList || []));
    });
    await page.goto(url);

    // Serve the suite's requests until it reports its exit code.
    const served = new Set();
    let code;
    while (code === undefined) {
      code = await Promise.race([exited, new Promise((r) => setTimeout(() => r(undefined), 300))]);
      for (const name of fs.readdirSync(dirs.sync)) {
        const m = /^request-(\d+)\.json$/.exec(name);
        if (!m || served.has(name)) continue;
        served.add(name);
        const request = JSON.parse(fs.readFileSync(path.join(dirs.sync, name), 'utf8'));
        log(`step ${request.step}: ${request.what}`);
        let answer;
        if (request.what === 'problems-and-screenshot') {
          answer = await pageChecks(page).catch((e) => ({ failures: [String(e)], details: {} }));
          fs.mkdirSync(ARTIFACTS, { recursive: true });
          await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-notebook.png') });
          log(`screenshot: ${path.join(ARTIFACTS, 'e2e-notebook.png')}`);
        } else if (request.what === 'hostile-page') {
          answer = await hostilePage(page).catch((e) => ({ failures: [String(e)], details: {} }));
          await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-hostile.png') });
        } else if (request.what === 'problems-rows') {
          const rows = await page.locator('.markers-panel .monaco-list-row').evaluateAll((els) => els.map((e) => e.textContent));
          answer = { failures: [], details: { rows } };
        } else if (request.what === 'renderer-screenshot') {
          answer = await rendererScreenshot(page).catch((e) => ({ failures: [String(e)], details: {} }));
        } else if (request.what === 'type-text') {
          // Into whatever has the keyboard focus (the suite focuses a cell editor first), as typed
          // text: one input event, so the editor's auto-closing brackets do not double them.
          await page.keyboard.insertText(request.text);
          answer = { failures: [], details: { typed: request.text.length } };
        } else if (request.what.startsWith('screenshot:')) {
          const file = path.join(ARTIFACTS, path.basename(request.what.slice('screenshot:'.length)));
          await page.screenshot({ path: file });
          answer = { failures: [], details: { screenshot: file } };
        } else if (request.what.startsWith('renderer-summary:')) {
          answer = await rendererSummary(page, request.what.slice('renderer-summary:'.length)).catch((e) => ({ failures: [String(e)], details: {} }));
        } else if (request.what.startsWith('click-problems-code:')) {
          answer = await clickProblemsCode(page, request.what.slice('click-problems-code:'.length)).catch((e) => ({ failures: [String(e)], details: {} }));
        } else if (request.what.startsWith('rule-page:')) {
          answer = await rulePage(page, request.what.slice('rule-page:'.length)).catch((e) => ({ failures: [String(e)], details: {} }));
        } else if (request.what.startsWith('click-reveal:')) {
          answer = await clickReveal(page, request.what.slice('click-reveal:'.length)).catch((e) => ({ failures: [String(e)], details: {} }));
        } else {
          answer = { failures: [`unknown request ${request.what}`], details: {} };
        }
        log(`page: ${JSON.stringify(answer.details)}`);
        for (const f of answer.failures) console.error(`[e2e] page check failed: ${f}`);
        fs.writeFileSync(path.join(dirs.sync, `done-${request.step}.json`), JSON.stringify(answer));
      }
    }
    exitCode = code;
    await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-final.png') }).catch(() => {});
  } finally {
    const mochaLog = path.join(dirs.sync, 'mocha.log');
    if (fs.existsSync(mochaLog)) process.stdout.write(fs.readFileSync(mochaLog, 'utf8'));
    await context?.close().catch(() => {});
    stopServer();
    clearTimeout(deadline);
  }
  log(`extension-host tests exited with ${exitCode}`);
  process.exit(exitCode === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error('[e2e]', e);
  stopServer();
  process.exit(1);
});
