// Extension-host end-to-end tests: the installed gradwatch .vsix, a notebook whose
// outputs the real kernel side produced in this run (live.test.js runs cells itself), and
// VS Code's own APIs. Steps that
// need the page (Problems panel DOM, status bar, screenshot) are handed to the Playwright
// driver through files in $GRADWATCH_E2E_SYNC.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const vscode = require('vscode');

const { MIME, sleep, eventually, askDriver, notebookDiagnostics, cellDiagnostics, described, codeActions, SYNC } = require('./helpers');

const NOTEBOOK = 'seed.ipynb';
const seedDiagnostics = () => notebookDiagnostics(NOTEBOOK);

const P1 = [
  'GW001 error 9:5-9:22 "torch.randn(1, 1)"',
  'GW001 error 10:5-10:22 "torch.randn(1, 1)"',
];
// Later tests exercise the editor's behaviour on these two rules only, so that a new
// kernel-side rule fails the exact test above and not every lifecycle test.
const SEED_CODES = ['GW001', 'GW002'];
const P3 = ['GW002 error 29:23-29:38 "y_pred.detach()"'];

suite('gradwatch in VS Code', function () {
  let notebook;
  let editor;
  let cells;

  suiteSetup(async function () {
    assert.ok(SYNC, 'GRADWATCH_E2E_SYNC is set');
    const ext = vscode.extensions.getExtension('gradwatch.gradwatch');
    assert.ok(ext, 'the gradwatch extension is installed');
    await ext.activate();
    const folder = vscode.workspace.workspaceFolders[0].uri;
    // Opened like a user would (not openNotebookDocument, whose reference keeps the
    // document open for minutes), so that closing the editor closes the notebook.
    await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.joinPath(folder, NOTEBOOK), 'jupyter-notebook');
    editor = await eventually(() => {
      const e = vscode.window.activeNotebookEditor;
      assert.ok(e && e.notebook.uri.path.endsWith(NOTEBOOK));
      return e;
    });
    notebook = editor.notebook;
    cells = notebook.getCells();
  });

  test('runs the .vsix installed in the extensions folder, not a development copy', function () {
    const ext = vscode.extensions.getExtension('gradwatch.gradwatch');
    assert.ok(ext.extensionPath.startsWith(process.env.GRADWATCH_E2E_EXTENSIONS_DIR), ext.extensionPath);
    assert.strictEqual(ext.packageJSON.engines.vscode, '^1.100.0');
  });

  test('the notebook has the seed cells with the execution counts the kernel gave them', function () {
    assert.strictEqual(notebook.notebookType, 'jupyter-notebook');
    assert.deepStrictEqual(
      cells.map((c) => [c.executionSummary && c.executionSummary.executionOrder, c.document.lineAt(0).text]),
      [[1, '%load_ext gradwatch'], [2, '%%gradwatch'], [3, '%%gradwatch'], [4, '%%gradwatch']],
    );
  });

  test('diagnostics land on the exact cells, lines and columns', async function () {
    await eventually(() => {
      assert.deepStrictEqual(described(cells[1]), P1);
      assert.deepStrictEqual(described(cells[3]), P3);
    });
    assert.deepStrictEqual(described(cells[0]), []);
    assert.deepStrictEqual(described(cells[2]), [], 'no diagnostic for program 2');
  });

  test('each diagnostic links its code to the rule page and carries related locations', function () {
    const [w] = cellDiagnostics(cells[1]).sort((a, b) => a.range.start.line - b.range.start.line);
    assert.strictEqual(w.source, 'gradwatch');
    assert.strictEqual(w.code.value, 'GW001');
    // The code opens the bundled page (offline) through the extension's command; the url is its fallback.
    assert.strictEqual(w.code.target.scheme, 'command');
    assert.strictEqual(w.code.target.path, 'gradwatch.openDocumentation');
    const [code, url] = JSON.parse(w.code.target.query);
    assert.strictEqual(code, 'GW001');
    assert.match(url, /^https:\/\/.*GW001/);
    assert.match(w.message, /`w`/);
    const related = w.relatedInformation.map((r) => [r.location.uri.toString(), r.location.range.start.line + 1, cells[1].document.lineAt(r.location.range.start.line).text.trim()]);
    assert.ok(related.length >= 1);
    for (const [uri] of related) assert.strictEqual(uri, cells[1].document.uri.toString());
    assert.ok(related.some(([, , text]) => text === 'optimizer = torch.optim.SGD([w, b], lr=learning_rate)'), JSON.stringify(related));
  });

  test('Problems panel, status bar and renderer show them (checked in the page)', async function () {
    await vscode.commands.executeCommand('workbench.actions.view.problems');
    // Caret on the comment above the squiggles: no word highlight over the flagged code.
    await vscode.window.showTextDocument(cells[1].document, { selection: new vscode.Range(7, 0, 7, 0), viewColumn: editor.viewColumn });
    await sleep(500);
    await askDriver('problems-and-screenshot');
  });

  test('the renderer draws its table under program 1 (screenshot)', async function () {
    await vscode.commands.executeCommand('workbench.action.closePanel');
    editor.revealRange(new vscode.NotebookRange(1, 2), vscode.NotebookEditorRevealType.AtTop);
    await sleep(300);
    await askDriver('renderer-screenshot');
  });

  test('the renderer reveal link selects the flagged range in its cell', async function () {
    await askDriver('click-reveal:cell [4], line 29, col 23');
    await eventually(() => {
      const active = vscode.window.activeTextEditor;
      assert.ok(active, 'an editor is active');
      assert.strictEqual(active.document.uri.toString(), cells[3].document.uri.toString());
      assert.strictEqual(active.document.getText(active.selection), 'y_pred.detach()');
    });
  });

  test('quick fixes for program 1: safe fix preferred, ignore, documentation', async function () {
    const doc = cells[1].document;
    const ours = await codeActions(cells[1], new vscode.Range(8, 4, 8, 21));
    assert.deepStrictEqual(
      ours.map((a) => [a.title, !!a.isPreferred, a.kind && a.kind.value]),
      [
        ['Add `requires_grad=True`', true, 'quickfix'],
        ['Ignore GW001 for this cell', false, 'quickfix'],
        ['Show documentation for GW001', false, 'quickfix'],
      ],
    );
    assert.strictEqual(ours[2].command.command, 'gradwatch.openDocumentation');
    assert.strictEqual(ours[2].command.arguments[0], 'GW001');
    assert.match(ours[2].command.arguments[1], /^https:\/\/.*GW001/, 'the online page stays the fallback');
    assert.ok(await vscode.workspace.applyEdit(ours[0].edit));
    assert.strictEqual(doc.lineAt(8).text, 'w = torch.randn(1, 1, requires_grad=True)');
    assert.strictEqual(doc.lineAt(9).text, 'b = torch.randn(1, 1)');
    // The fixed line no longer reads as diagnosed: its squiggle goes, b's stays.
    await eventually(() => assert.deepStrictEqual(described(cells[1], SEED_CODES), ['GW001 error 10:5-10:22 "torch.randn(1, 1)"']));
  });

  test('"Show documentation" opens the rule page bundled in the .vsix, offline, in the Markdown preview', async function () {
    const [, , docs] = await codeActions(cells[1], new vscode.Range(9, 4, 9, 21));
    assert.strictEqual(docs.title, 'Show documentation for GW001');
    assert.strictEqual(await vscode.commands.executeCommand(docs.command.command, ...docs.command.arguments), true);
    const isPreview = (t) => t.input instanceof vscode.TabInputWebview && /markdown\.preview/.test(t.input.viewType);
    const tab = await eventually(() => {
      const found = vscode.window.tabGroups.all.flatMap((g) => g.tabs).find(isPreview);
      assert.ok(found, 'a Markdown preview tab');
      return found;
    });
    assert.match(tab.label, /GW001\.md/);
    // The page is the bundled file, read-only (a content provider's document), from the installed extension.
    const page = await vscode.workspace.openTextDocument(vscode.Uri.parse('gradwatch-rule:/GW001.md'));
    const installed = path.join(vscode.extensions.getExtension('gradwatch.gradwatch').extensionPath, 'extension', 'out', 'docs', 'rules', 'GW001.md');
    assert.strictEqual(page.getText(), fs.readFileSync(installed, 'utf8'));
    assert.match(page.getText(), /^# GW001 requires-grad-missing\n/);
    await askDriver('rule-page:GW001 requires-grad-missing');
    await vscode.window.tabGroups.close(tab);
    // The code in the Problems panel opens the same page (a command link, no network).
    await vscode.commands.executeCommand('workbench.actions.view.problems');
    await askDriver('click-problems-code:GW001');
    const again = await eventually(() => {
      const found = vscode.window.tabGroups.all.flatMap((g) => g.tabs).find(isPreview);
      assert.ok(found && /GW001\.md/.test(found.label), 'the Problems panel code link opened the page');
      return found;
    });
    await vscode.window.tabGroups.close(again);
    await vscode.commands.executeCommand('workbench.action.closePanel');
    await vscode.window.showNotebookDocument(notebook);
  });

  test('program 3: the unsafe fix is offered but not preferred; ignoring GW002 edits the magic line', async function () {
    const doc = cells[3].document;
    const ours = await codeActions(cells[3], new vscode.Range(28, 22, 28, 37));
    assert.deepStrictEqual(ours.map((a) => [a.title, !!a.isPreferred]), [
      ['Use `y_pred` instead (fix that changes behaviour)', false],
      ['Ignore GW002 for this cell', false],
      ['Show documentation for GW002', false],
    ]);
    assert.ok(await vscode.workspace.applyEdit(ours[1].edit));
    assert.strictEqual(doc.lineAt(0).text, '%%gradwatch --ignore GW002');
    await eventually(() => assert.deepStrictEqual(described(cells[3], SEED_CODES), []));
    assert.deepStrictEqual(described(cells[1], SEED_CODES), ['GW001 error 10:5-10:22 "torch.randn(1, 1)"']);
  });

  test('the gradwatch.enable setting clears and restores diagnostics', async function () {
    const config = vscode.workspace.getConfiguration('gradwatch');
    await config.update('enable', false, vscode.ConfigurationTarget.Global);
    await eventually(() => assert.deepStrictEqual(described(cells[1]), []));
    await config.update('enable', undefined, vscode.ConfigurationTarget.Global);
    await eventually(() => assert.deepStrictEqual(described(cells[1], SEED_CODES), ['GW001 error 10:5-10:22 "torch.randn(1, 1)"']));
  });

  test('a cell replaced by a new run (new count, new output) shows only the new diagnostics', async function () {
    // This saved notebook has no kernel (live.test.js runs cells for real): a re-run is written
    // as the notebook edit a kernel's result amounts to: same code, execution count 5, a payload
    // that reports only b.
    const item = cells[1].outputs.flatMap((o) => o.items).find((i) => i.mime === MIME);
    const old = JSON.parse(new TextDecoder().decode(item.data));
    const b = old.diagnostics.find((d) => d.location.line === 10);
    const rerun = {
      ...old,
      cell: { execution_count: 5 },
      diagnostics: [{ ...b, message: 'b again, after the re-run', help: undefined, location: { ...b.location, cell: 5 }, related: [], fix: null }],
    };
    const data = new vscode.NotebookCellData(vscode.NotebookCellKind.Code, cells[1].document.getText(), 'python');
    data.outputs = [new vscode.NotebookCellOutput([vscode.NotebookCellOutputItem.json(rerun, MIME)])];
    data.executionSummary = { executionOrder: 5, success: true };
    const edit = new vscode.WorkspaceEdit();
    edit.set(notebook.uri, [vscode.NotebookEdit.replaceCells(new vscode.NotebookRange(1, 2), [data])]);
    const oldUri = cells[1].document.uri;
    assert.ok(await vscode.workspace.applyEdit(edit));
    cells = notebook.getCells();
    await eventually(() => {
      assert.deepStrictEqual(described(cells[1]), ['GW001 error 10:5-10:22 "torch.randn(1, 1)"']);
      assert.deepStrictEqual(cellDiagnostics(cells[1]).map((d) => d.message), ['b again, after the re-run']);
    });
    assert.strictEqual(cells[1].executionSummary.executionOrder, 5);
    assert.notStrictEqual(oldUri.toString(), cells[1].document.uri.toString(), 'a replaced cell is a new document');
    assert.deepStrictEqual(vscode.languages.getDiagnostics(oldUri), [], 'the replaced cell keeps no diagnostics');
  });

  test('closing the notebook removes its diagnostics', async function () {
    const closed = new Promise((resolve) => vscode.workspace.onDidCloseNotebookDocument((nb) => nb === notebook && resolve()));
    await vscode.window.showNotebookDocument(notebook);
    // Not dirty, so closing asks nothing (VS Code saved the notebook edits above already).
    await vscode.commands.executeCommand('workbench.action.files.revert');
    assert.strictEqual(notebook.isDirty, false);
    assert.ok(seedDiagnostics().length > 0, 'something to remove');
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    await Promise.race([closed, sleep(60000)]);
    assert.ok(notebook.isClosed, 'the notebook document closed');
    // Every one of them goes, whatever cell it was on, in the window's Problems panel too.
    await eventually(() => assert.deepStrictEqual(seedDiagnostics(), []));
    await vscode.commands.executeCommand('workbench.actions.view.problems');
    await eventually(async () => {
      const { details } = await askDriver('problems-rows');
      assert.deepStrictEqual(details.rows.filter((r) => r.includes(NOTEBOOK)), []);
    }, 10000);
  });
});

suite('untrusted outputs (tests/e2e/fixtures/hostile.ipynb)', function () {
  let cells;

  suiteSetup(async function () {
    const folder = vscode.workspace.workspaceFolders[0].uri;
    await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.joinPath(folder, 'hostile.ipynb'), 'jupyter-notebook');
    const editor = await eventually(() => {
      const e = vscode.window.activeNotebookEditor;
      assert.ok(e && e.notebook.uri.path.endsWith('hostile.ipynb'));
      return e;
    });
    cells = editor.notebook.getCells();
  });

  test('astral and non-ASCII text before a range: UTF-16 columns are right', async function () {
    await eventually(() =>
      assert.deepStrictEqual(described(cells[0]), ['GW001 error 2:1-2:2 "ŵ"', 'GW002 warning 2:15-2:25 "ŵ.detach()"', 'GW005 info 2:15-2:25 "ŵ.detach()"']),
    );
  });

  test('a payload from a later cell lands in the earlier cell its execution count names', function () {
    const [fromLater] = cellDiagnostics(cells[0]).filter((d) => d.code.value === 'GW005');
    assert.strictEqual(fromLater.message, 'found while running a later cell');
    assert.strictEqual(fromLater.severity, vscode.DiagnosticSeverity.Information);
    assert.deepStrictEqual(described(cells[3]), []);
  });

  test('payload text stays plain text and non-http(s) links are dropped', function () {
    const [html, cut] = cellDiagnostics(cells[0]).filter((d) => d.code.value !== 'GW005').sort((a, b) => a.range.start.compareTo(b.range.start));
    assert.strictEqual(html.message, '<img src=x onerror=alert(1)> **bold** [run](command:workbench.action.terminal.new)');
    // The codes open the bundled pages only: the javascript: and command: URLs are gone.
    assert.deepStrictEqual([html.code.value, JSON.parse(html.code.target.query)], ['GW001', ['GW001', null]]);
    assert.deepStrictEqual([cut.code.value, JSON.parse(cut.code.target.query)], ['GW002', ['GW002', null]]);
    // The help line follows the short message, as text (the Problems panel shows the first line).
    assert.strictEqual(cut.message, 'ŵ.detach() cuts the graph\n<b>no gradient</b> reaches ŵ: use it without `.detach()`');
  });

  test('wrong-version and non-object payloads are ignored', function () {
    assert.deepStrictEqual(described(cells[1]), []);
    assert.deepStrictEqual(described(cells[2]), []);
  });

  test('the page shows payload HTML as text, malformed payloads as a notice, and no popup', async function () {
    await askDriver('hostile-page');
  });
});
