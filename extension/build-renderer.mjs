// Bundles the notebook renderer (and the pure payload module it shares with the
// extension) into one ES module: renderers are loaded with import() in a webview.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
await build({
  entryPoints: [`${here}src/renderer/index.ts`],
  outfile: `${here}out/renderer.js`,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  minify: false,
  logLevel: 'warning',
});
