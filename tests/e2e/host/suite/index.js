// Entry point VS Code loads as extensionTestsPath: runs the mocha suite inside the
// extension host (like @vscode/test-cli does) and reports failures through run()'s promise.
const fs = require('fs');
const path = require('path');
const Mocha = require(path.resolve(__dirname, '../../../../node_modules/mocha'));

exports.run = function run() {
  // The extension host's stdout goes nowhere useful in code-server: copy the report to a file.
  const logFile = path.join(process.env.GRADWATCH_E2E_SYNC, 'mocha.log');
  Mocha.reporters.Base.consoleLog = (...args) => {
    fs.appendFileSync(logFile, require('util').format(...args) + '\n');
    console.log(...args);
  };
  const mocha = new Mocha({ ui: 'tdd', color: false, timeout: 120000, reporter: 'spec' });
  // GRADWATCH_E2E_GREP=regex runs only matching tests (when debugging one of them).
  if (process.env.GRADWATCH_E2E_GREP) mocha.grep(new RegExp(process.env.GRADWATCH_E2E_GREP));
  mocha.addFile(path.join(__dirname, 'notebook.test.js'));
  mocha.addFile(path.join(__dirname, 'live.test.js'));
  return new Promise((resolve, reject) => {
    mocha.run((failures) => (failures ? reject(new Error(`${failures} e2e test(s) failed`)) : resolve()));
  });
};
