// Runs engine requests (one JSON object a line) through the extension's
// WebAssembly module with the extension's own loader, for
// tests/tests/extension_parity.rs, which compares the replies with the same
// engine built natively. Usage: node wasm-parity.mjs <wasm> <requests> <replies>
import { readFileSync, writeFileSync } from 'node:fs';
import { loadEngine, call } from '../../extension/engine.js';

const [wasm, requests, out] = process.argv.slice(2);
await loadEngine(readFileSync(wasm));
const replies = readFileSync(requests, 'utf8').split('\n').filter(Boolean).map((line) => {
  const { op, ...fields } = JSON.parse(line);
  try {
    return JSON.stringify({ ok: call(op, fields) });
  } catch (e) {
    return JSON.stringify({ error: e.message });
  }
});
writeFileSync(out, `${replies.join('\n')}\n`);
