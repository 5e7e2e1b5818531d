// Live cells (issue 13, section 7): a notebook the test writes cell by cell and runs in a real
// ipykernel through the test-only controller (liveKernel.js), as a user would: the seed program
// typed in and run, its squiggles, the quick fix, the re-run that clears them; a root cause
// in an earlier cell; a cell re-run after an edit; and a location in a .py file.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const vscode = require('vscode');
const { MIME, eventually, askDriver, cellDiagnostics, described, codeActions } = require('./helpers');

const REPO = path.resolve(__dirname, '..', '..', '..', '..');
const NOTEBOOK = 'live.ipynb';
/** A cell's run may import torch and train: generous, but a hang still fails with a message. */
const RUN_TIMEOUT_MS = 180000;

const SEED = '%%gradwatch\n' + fs.readFileSync(path.join(REPO, 'examples', 'seed', 'program1_no_requires_grad.py'), 'utf8').replace(/\n+$/, '');
const PARAMETERS = 'import torch\nw = torch.randn(3, 1)\nb = torch.zeros(1, requires_grad=True)';
const TRAINING = [
  '%%gradwatch',
  'X = torch.randn(8, 3)',
  'y = torch.randn(8, 1)',
  'opt = torch.optim.SGD([w, b], lr=0.1)',
  'for _ in range(3):',
  '    loss = ((X @ w + b - y) ** 2).mean()',
  '    opt.zero_grad()',
  '    loss.backward()',
  '    opt.step()',
].join('\n');
const HELPERS = ['import torch', '', '', 'def make_params():', '    w = torch.randn(3, 1)', '    b = torch.zeros(1, requires_grad=True)', '    return w, b', ''].join('\n');
const FROM_FILE = [
  '%%gradwatch',
  'import importlib',
  'import helpers',
  'importlib.reload(helpers)',
  'w2, b2 = helpers.make_params()',
  'X = torch.randn(8, 3)',
  'y = torch.randn(8, 1)',
  'opt = torch.optim.SGD([w2, b2], lr=0.1)',
  'for _ in range(3):',
  '    loss = ((X @ w2 + b2 - y) ** 2).mean()',
  '    opt.zero_grad()',
  '    loss.backward()',
  '    opt.step()',
].join('\n');

/** The gradwatch payloads in a cell's outputs. */
function payloads(cell) {
  return cell.outputs.flatMap((o) => o.items).filter((i) => i.mime === MIME).map((i) => JSON.parse(new TextDecoder().decode(i.data)));
}

function outputMimes(cell) {
  return cell.outputs.flatMap((o) => o.items.map((i) => i.mime));
}

/** A cell's outputs as text, for failure messages. */
function outputsText(cell) {
  return cell.outputs.flatMap((o) => o.items.map((i) => `${i.mime}: ${new TextDecoder().decode(i.data).slice(0, 2000)}`)).join('\n');
}

suite('live cells (a real ipykernel through a test-only controller)', function () {
  let kernel;
  let editor;
  let notebook;
  let folder;

  /** Runs cells as the user's "Run Cell" does and waits until each finished with a new count. */
  async function run(...indices) {
    const before = indices.map((i) => notebook.cellAt(i).executionSummary?.executionOrder);
    await vscode.window.showNotebookDocument(notebook, { viewColumn: editor.viewColumn });
    await vscode.commands.executeCommand('notebook.cell.execute', { ranges: indices.map((i) => ({ start: i, end: i + 1 })), document: notebook.uri });
    await eventually(() => {
      indices.forEach((i, k) => {
        const summary = notebook.cellAt(i).executionSummary;
        const why = `cell ${i} has not finished running with a new execution count (kernel bridge stderr: ${kernel.stderr.slice(-1500) || 'empty'})`;
        assert.ok(summary && summary.timing && summary.timing.endTime, why);
        assert.notStrictEqual(summary.executionOrder, before[k], why);
      });
    }, RUN_TIMEOUT_MS);
    return indices.map((i) => notebook.cellAt(i));
  }

  /** Appends a code cell and types `text` into it (an edit of its text model, without auto-closing brackets). */
  async function typeCell(text) {
    const index = notebook.cellCount;
    const edit = new vscode.WorkspaceEdit();
    edit.set(notebook.uri, [vscode.NotebookEdit.insertCells(index, [new vscode.NotebookCellData(vscode.NotebookCellKind.Code, '', 'python')])]);
    assert.ok(await vscode.workspace.applyEdit(edit));
    const cell = notebook.cellAt(index);
    editor.revealRange(new vscode.NotebookRange(index, index + 1), vscode.NotebookEditorRevealType.AtTop);
    const cellEditor = await eventually(() => vscode.window.showTextDocument(cell.document, { viewColumn: editor.viewColumn }));
    assert.ok(await cellEditor.edit((b) => b.insert(new vscode.Position(0, 0), text)));
    assert.strictEqual(cell.document.getText(), text);
    return cell;
  }

  /** Appends a code cell, focuses its editor and has the page type `text` into it on the keyboard. */
  async function typeCellOnKeyboard(text) {
    const cell = await typeCell('');
    await askDriver('type-text', 60000, { text });
    await eventually(() => assert.strictEqual(cell.document.getText(), text, 'the typed text is the cell text'));
    return cell;
  }

  async function applyQuickFix(cell, range, title) {
    const actions = await codeActions(cell, range);
    const fix = actions.find((a) => a.title === title);
    assert.ok(fix, `no quick fix "${title}" among ${JSON.stringify(actions.map((a) => a.title))}`);
    assert.ok(await vscode.workspace.applyEdit(fix.edit));
    return fix;
  }

  suiteSetup(async function () {
    const python = process.env.GRADWATCH_E2E_PYTHON;
    assert.ok(python, 'GRADWATCH_E2E_PYTHON is set');
    folder = vscode.workspace.workspaceFolders[0].uri;
    fs.writeFileSync(path.join(folder.fsPath, 'helpers.py'), HELPERS);
    fs.writeFileSync(
      path.join(folder.fsPath, NOTEBOOK),
      JSON.stringify({ cells: [], metadata: { language_info: { name: 'python' } }, nbformat: 4, nbformat_minor: 5 }),
    );
    // The controller comes from the host extension (its owner), not from this file's require.
    const { LiveKernel } = await vscode.extensions.getExtension('gradwatch.gradwatch-e2e-host').activate();
    kernel = new LiveKernel(python, folder.fsPath);
    await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.joinPath(folder, NOTEBOOK), 'jupyter-notebook');
    editor = await eventually(() => {
      const e = vscode.window.activeNotebookEditor;
      assert.ok(e && e.notebook.uri.path.endsWith('/' + NOTEBOOK));
      return e;
    });
    notebook = editor.notebook;
    await kernel.ready;
    await kernel.selectFor(editor);
  });

  suiteTeardown(async function () {
    if (notebook && !notebook.isClosed) {
      await vscode.window.showNotebookDocument(notebook);
      await vscode.commands.executeCommand('workbench.action.files.revert');
      await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    }
    await kernel?.dispose();
  });

  test('the seed program typed into a cell and run: GW001 squiggles at line 9 and 10', async function () {
    await typeCell('%load_ext gradwatch');
    const cell = await typeCellOnKeyboard(SEED);
    const [loaded, seed] = await run(0, 1);
    assert.deepStrictEqual([loaded.executionSummary.executionOrder, seed.executionSummary.executionOrder], [1, 2]);
    // The program raises (backward of a loss that needs no grad); gradwatch's report comes with it.
    assert.ok(outputMimes(seed).includes(MIME), outputsText(seed));
    assert.ok(outputMimes(seed).includes('application/vnd.code.notebook.error'), 'the RuntimeError is shown');
    assert.deepStrictEqual(payloads(seed).map((p) => [p.cell.execution_count, p.diagnostics.map((d) => `${d.code} ${d.location.line}:${d.location.column}`)]), [[2, ['GW001 9:5', 'GW001 10:5']]]);
    await eventually(() =>
      assert.deepStrictEqual(described(cell), ['GW001 error 9:5-9:22 "torch.randn(1, 1)"', 'GW001 error 10:5-10:22 "torch.randn(1, 1)"']),
    );
    // The kernel's short message, then its help line (issue 13, section 2): the Problems panel shows the first line.
    const w = cellDiagnostics(cell).find((d) => d.range.start.line === 8);
    assert.strictEqual(w.message, '`w` is created without `requires_grad=True`\n'
      + 'No gradient can reach it, so `optimizer` never updates it: create it with `requires_grad=True`.');
    editor.revealRange(new vscode.NotebookRange(1, 2), vscode.NotebookEditorRevealType.AtTop);
    await askDriver('renderer-summary:gradwatch: 2 problem(s)');
    await askDriver('screenshot:e2e-live.png');
  });

  test('the safe quick fixes applied and the cell re-run: the squiggles clear and the report says so', async function () {
    const cell = notebook.cellAt(1);
    const w = await applyQuickFix(cell, new vscode.Range(8, 4, 8, 21), 'Add `requires_grad=True`');
    assert.strictEqual(w.isPreferred, true);
    await applyQuickFix(cell, new vscode.Range(9, 4, 9, 21), 'Add `requires_grad=True`');
    assert.deepStrictEqual([cell.document.lineAt(8).text, cell.document.lineAt(9).text], ['w = torch.randn(1, 1, requires_grad=True)', 'b = torch.randn(1, 1, requires_grad=True)']);
    const [rerun] = await run(1);
    assert.strictEqual(rerun.executionSummary.executionOrder, 3);
    assert.strictEqual(rerun.executionSummary.success, true, 'the fixed program trains without an error');
    assert.deepStrictEqual(payloads(rerun).map((p) => [p.cell.execution_count, p.diagnostics.length]), [[3, 0]]);
    await eventually(() => assert.deepStrictEqual(cellDiagnostics(rerun), []));
    editor.revealRange(new vscode.NotebookRange(1, 2), vscode.NotebookEditorRevealType.AtTop);
    await askDriver('renderer-summary:gradwatch: no problems found');
  });

  test('a root cause in an earlier cell: the squiggle lands there, related locations in the cell that ran', async function () {
    const parameters = await typeCell(PARAMETERS);
    const training = await typeCell(TRAINING);
    await run(parameters.index, training.index);
    await eventually(() => assert.deepStrictEqual(described(parameters), ['GW001 error 2:5-2:22 "torch.randn(3, 1)"']));
    assert.deepStrictEqual(described(training), []);
    const [gw001] = cellDiagnostics(parameters);
    const related = gw001.relatedInformation.map((r) => [r.location.uri.toString() === training.document.uri.toString(), r.location.range.start.line + 1]);
    assert.deepStrictEqual(related, [[true, 4], [true, 8]], 'the optimizer and backward() lines of the training cell');
  });

  test('a cell edited and re-run: the old squiggle goes at once, the new run places it again', async function () {
    const [parameters, training] = [notebook.cellAt(2), notebook.cellAt(3)];
    const before = parameters.executionSummary.executionOrder;
    const cellEditor = await eventually(() => vscode.window.showTextDocument(parameters.document, { viewColumn: editor.viewColumn }));
    assert.ok(await cellEditor.edit((b) => b.insert(new vscode.Position(1, 0), '# the weights, trained below\n')));
    await eventually(() => assert.deepStrictEqual(described(parameters), [], 'line 2 no longer reads as diagnosed'));
    await run(parameters.index, training.index);
    assert.ok(parameters.executionSummary.executionOrder > before);
    await eventually(() => assert.deepStrictEqual(described(parameters), ['GW001 error 3:5-3:22 "torch.randn(3, 1)"']));
    assert.deepStrictEqual(payloads(training).map((p) => p.diagnostics.map((d) => [d.location.cell, d.location.line])), [[[parameters.executionSummary.executionOrder, 3]]]);
  });

  test('a location in a .py file (payload `path`): squiggle in the file, a suggestion only, cleared by fixing the file and re-running', async function () {
    const helpers = vscode.Uri.joinPath(folder, 'helpers.py');
    const cell = await typeCell(FROM_FILE);
    await run(cell.index);
    const [payload] = payloads(cell);
    assert.deepStrictEqual(payload.diagnostics.map((d) => [d.code, d.location.path, d.location.line, d.location.column]), [['GW001', helpers.fsPath, 5, 9]]);
    const fileDiagnostics = () => vscode.languages.getDiagnostics(helpers).filter((d) => d.source === 'gradwatch');
    const [gw001] = await eventually(() => {
      const found = fileDiagnostics();
      assert.strictEqual(found.length, 1);
      return found;
    });
    assert.deepStrictEqual([gw001.range.start.line, gw001.range.start.character, gw001.range.end.character], [4, 8, 25]);
    // A notebook's output never edits a file: its fix is shown as a suggestion, not offered as an edit.
    const notes = gw001.relatedInformation.map((r) => r.message);
    assert.ok(notes.includes('Suggestion: Add `requires_grad=True`'), JSON.stringify(notes));
    const document = await vscode.workspace.openTextDocument(helpers);
    const fileEditor = await vscode.window.showTextDocument(document, { viewColumn: vscode.ViewColumn.Beside });
    const actions = await vscode.commands.executeCommand('vscode.executeCodeActionProvider', helpers, gw001.range);
    assert.deepStrictEqual(actions.map((a) => a.title), ['Ignore GW001 for this cell', 'Show documentation for GW001']);
    // The user fixes the file, saves it, and runs the cell again.
    assert.ok(await fileEditor.edit((b) => b.insert(new vscode.Position(4, 24), ', requires_grad=True')));
    assert.ok(await document.save());
    await eventually(() => assert.deepStrictEqual(fileDiagnostics(), [], 'the edited line no longer reads as diagnosed'));
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
    const [rerun] = await run(cell.index);
    assert.deepStrictEqual(payloads(rerun).map((p) => p.diagnostics.length), [0]);
    assert.deepStrictEqual(fileDiagnostics(), []);
  });
});
