// Test-only NotebookController: runs cells of .ipynb notebooks in a real ipykernel through
// tests/e2e/kernel_bridge.py (jupyter_client, the project's Python), so the e2e executes cells
// as a user does, with real outputs and the gradwatch MIME bundle. code-server has no Jupyter
// extension offline; this stands in for it. Loaded only by the e2e suite, never shipped.
const { spawn } = require('child_process');
const path = require('path');
const readline = require('readline');
const vscode = require('vscode');

const CONTROLLER_ID = 'gradwatch-e2e-kernel';
/** The development extension that carries the suite (tests/e2e/host/package.json). */
const HOST_EXTENSION = 'gradwatch.gradwatch-e2e-host';
const BRIDGE = path.resolve(__dirname, '..', '..', 'kernel_bridge.py');
const START_TIMEOUT_MS = 120000;

/** One nbformat output (from the bridge) as VS Code output items, mime by mime. */
function toCellOutput(output) {
  if (output.output_type === 'stream') {
    const item = output.name === 'stderr' ? vscode.NotebookCellOutputItem.stderr(output.text) : vscode.NotebookCellOutputItem.stdout(output.text);
    return new vscode.NotebookCellOutput([item]);
  }
  if (output.output_type === 'error') {
    return new vscode.NotebookCellOutput([vscode.NotebookCellOutputItem.error({ name: output.ename, message: output.evalue, stack: output.traceback.join('\n') })]);
  }
  const items = Object.entries(output.data).map(([mime, value]) => {
    if (mime === 'application/json' || mime.endsWith('+json')) return vscode.NotebookCellOutputItem.json(value, mime);
    const text = Array.isArray(value) ? value.join('') : String(value);
    if (mime.startsWith('image/') && mime !== 'image/svg+xml') return new vscode.NotebookCellOutputItem(Buffer.from(text, 'base64'), mime);
    return vscode.NotebookCellOutputItem.text(text, mime);
  });
  return new vscode.NotebookCellOutput(items, output.metadata);
}

class LiveKernel {
  /** Starts the bridge (kernel cwd `cwd`) and the controller; `python` is the project's interpreter. */
  constructor(python, cwd) {
    this.stderr = '';
    this.pending = new Map(); // request id -> { onMessage, resolve, reject }
    this.nextId = 1;
    this.process = spawn(python, [BRIDGE, cwd], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.process.stderr.on('data', (chunk) => (this.stderr = (this.stderr + chunk).slice(-4000)));
    this.exited = new Promise((resolve) => this.process.on('exit', (code, signal) => resolve(`kernel bridge exited (${code ?? signal})`)));
    this.exited.then((why) => {
      for (const p of this.pending.values()) p.reject(new Error(`${why}; stderr: ${this.stderr}`));
      this.pending.clear();
    });
    let readyResolve;
    const ready = new Promise((r) => (readyResolve = r));
    readline.createInterface({ input: this.process.stdout }).on('line', (line) => {
      let message;
      try {
        message = JSON.parse(line);
      } catch {
        return; // not ours (nothing else should print here)
      }
      if (message.type === 'ready') return readyResolve();
      const p = this.pending.get(message.id);
      if (!p) return;
      if (message.type === 'done') {
        this.pending.delete(message.id);
        p.resolve(message);
      } else p.onMessage(message);
    });
    this.ready = Promise.race([
      ready,
      this.exited.then((why) => Promise.reject(new Error(`${why} before the kernel was ready; stderr: ${this.stderr}`))),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`the kernel was not ready after ${START_TIMEOUT_MS} ms; stderr: ${this.stderr}`)), START_TIMEOUT_MS)),
    ]);
    this.ready.catch(() => {}); // awaited by the suite; no unhandled rejection meanwhile
    this.controller = vscode.notebooks.createNotebookController(CONTROLLER_ID, 'jupyter-notebook', 'gradwatch e2e kernel (test only)');
    this.controller.supportedLanguages = ['python'];
    this.controller.supportsExecutionOrder = true;
    this.controller.executeHandler = (cells) => this.executeCells(cells);
  }

  /** Runs `code`; `onMessage` gets each {type: "started"|"output"} message; resolves with the "done" one. */
  request(code, onMessage) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { onMessage, resolve, reject });
      this.process.stdin.write(JSON.stringify({ id, code }) + '\n');
    });
  }

  async executeCells(cells) {
    await this.ready;
    for (const cell of cells) {
      const execution = this.controller.createNotebookCellExecution(cell);
      execution.start(Date.now());
      await execution.clearOutput();
      // Outputs are appended in the order they came, each after the previous one landed.
      let appended = Promise.resolve();
      let done;
      try {
        done = await this.request(cell.document.getText(), (message) => {
          if (message.type === 'started') execution.executionOrder = message.execution_count;
          else appended = appended.then(() => execution.appendOutput(toCellOutput(message.output)));
        });
        await appended;
      } catch (e) {
        await execution.replaceOutput(new vscode.NotebookCellOutput([vscode.NotebookCellOutputItem.error(e)]));
        execution.end(false, Date.now());
        throw e;
      }
      if (typeof done.execution_count === 'number') execution.executionOrder = done.execution_count;
      execution.end(done.status === 'ok', Date.now());
    }
  }

  /** Makes this controller the notebook's kernel (as the user's "Select Kernel" does). */
  async selectFor(notebookEditor) {
    const notebook = notebookEditor.notebook;
    let subscription;
    const selected = new Promise((resolve) => {
      subscription = this.controller.onDidChangeSelectedNotebooks((e) => e.notebook === notebook && e.selected && resolve(true));
    });
    await vscode.window.showNotebookDocument(notebook, { viewColumn: notebookEditor.viewColumn });
    await vscode.commands.executeCommand('notebook.selectKernel', { id: CONTROLLER_ID, extension: HOST_EXTENSION });
    const ok = await Promise.race([selected, new Promise((r) => setTimeout(() => r(false), 15000))]);
    subscription.dispose();
    if (!ok) throw new Error(`notebook.selectKernel did not select ${HOST_EXTENSION}/${CONTROLLER_ID} within 15 s`);
  }

  dispose() {
    this.controller.dispose();
    this.process.stdin.end(); // the bridge shuts the kernel down on EOF
    const timer = setTimeout(() => this.process.kill('SIGKILL'), 10000);
    return this.exited.then(() => clearTimeout(timer));
  }
}

module.exports = { LiveKernel };
