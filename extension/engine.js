// The rule engine and wire formats, from tutela.wasm (extension/wasm): one
// JSON call in, one JSON reply out. Binary fields are standard base64.

let exports = null;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Loads tutela.wasm from the extension, or `bytes` when given (tests).
export async function loadEngine(bytes) {
  if (exports) return;
  const module = bytes ?? await (await fetch(chrome.runtime.getURL('tutela.wasm'))).arrayBuffer();
  const { instance } = await WebAssembly.instantiate(module, {});
  exports = instance.exports;
}

// Calls the engine; throws with the engine's own words when it refuses.
export function call(op, fields = {}) {
  const request = encoder.encode(JSON.stringify({ op, ...fields }));
  const ptr = exports.tutela_alloc(request.length);
  new Uint8Array(exports.memory.buffer, ptr, request.length).set(request);
  const out = exports.tutela_call(ptr, request.length);
  const len = new DataView(exports.memory.buffer).getUint32(out, true);
  const reply = JSON.parse(decoder.decode(new Uint8Array(exports.memory.buffer, out + 4, len)));
  if ('error' in reply) throw new Error(reply.error);
  return reply.ok;
}

export function toBase64(bytes) {
  let s = '';
  const b = new Uint8Array(bytes);
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

export function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
