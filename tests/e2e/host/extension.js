// The e2e host extension's only code: it hands the suite the test-only notebook controller
// (suite/liveKernel.js), created here so that VS Code knows which extension owns it (a kernel
// is selected by "extension id/controller id"). Never part of the shipped .vsix.
exports.activate = function activate() {
  return { LiveKernel: require('./suite/liveKernel').LiveKernel };
};
