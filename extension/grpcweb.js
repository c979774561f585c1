// gRPC-Web (binary, application/grpc-web+proto) over fetch: unary calls and
// a server stream. The browser checks the collector's TLS certificate; the
// school's admin policy makes the browser trust it.

export class GrpcError extends Error {
  constructor(code, message, trailers = {}) {
    super(message || `gRPC status ${code}`);
    this.code = code;
    this.trailers = trailers;
  }
}

// gRPC status codes the extension acts on.
export const Code = {
  OK: 0, INVALID_ARGUMENT: 3, ALREADY_EXISTS: 6, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9,
  INTERNAL: 13, UNAVAILABLE: 14,
};

function frame(message) {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

function parseTrailers(bytes) {
  const trailers = {};
  for (const line of new TextDecoder().decode(bytes).split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) trailers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return trailers;
}

function statusOf(trailers) {
  const code = Number(trailers['grpc-status'] ?? 2);
  let message = trailers['grpc-message'] ?? '';
  try { message = decodeURIComponent(message); } catch { /* as sent */ }
  return code === 0 ? null : new GrpcError(code, message, trailers);
}

async function post(base, path, message, signal) {
  let response;
  try {
    response = await fetch(`${base}/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' },
      body: frame(message),
      signal,
      cache: 'no-store',
    });
  } catch (e) {
    // The network, TLS (an untrusted certificate) or the collector is down.
    const error = new GrpcError(Code.UNAVAILABLE, `cannot reach the collector at ${base} (${e.message}); check the address and that this device trusts the collector's certificate`);
    error.unreachable = true;
    error.base = base;
    throw error;
  }
  if (!response.ok) throw new GrpcError(Code.UNAVAILABLE, `the collector answered HTTP ${response.status}`);
  const headers = {};
  response.headers.forEach((v, k) => { headers[k] = v; });
  if (headers['grpc-status'] !== undefined) {
    const error = statusOf(headers);
    if (error) throw error;
  }
  return response;
}

// Reads frames from a response body; calls onMessage for each message and
// returns the trailers' status (null for OK).
async function readFrames(response, onMessage) {
  const reader = response.body.getReader();
  let buffer = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const joined = new Uint8Array(buffer.length + value.length);
    joined.set(buffer);
    joined.set(value, buffer.length);
    buffer = joined;
    while (buffer.length >= 5) {
      const flag = buffer[0];
      const len = new DataView(buffer.buffer, buffer.byteOffset).getUint32(1);
      if (buffer.length < 5 + len) break;
      const payload = buffer.slice(5, 5 + len);
      buffer = buffer.slice(5 + len);
      if (flag & 0x80) return statusOf(parseTrailers(payload));
      await onMessage(payload);
    }
  }
  return null;
}

/// A unary call that takes longer is given up (and retried by the caller).
const UNARY_TIMEOUT_MS = 20000;

export async function unary(base, path, message) {
  const response = await post(base, path, message, AbortSignal.timeout(UNARY_TIMEOUT_MS));
  let reply = null;
  const error = await readFrames(response, (m) => { reply = m; });
  if (error) throw error;
  if (!reply) throw new GrpcError(Code.INTERNAL, 'the collector sent no answer');
  return reply;
}

export async function serverStream(base, path, message, onMessage, signal) {
  const response = await post(base, path, message, signal);
  const error = await readFrames(response, onMessage);
  if (error) throw error;
}
