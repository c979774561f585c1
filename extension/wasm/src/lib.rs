//! The browser extension's WebAssembly module: the same rule engine
//! (`tutela-rules`), bundle and exemption checks and protobuf encodings as the
//! native agent, behind one JSON call so the JavaScript side stays small and
//! no binding generator is needed.
//!
//! The module exports `tutela_alloc(len) -> ptr` and `tutela_call(ptr, len)
//! -> ptr`: the caller writes a JSON request (`{"op": ..., ...}`) into memory
//! it allocated, and gets back a pointer to a little-endian `u32` length and
//! that many bytes of JSON reply (`{"ok": ...}` or `{"error": "..."}`), valid
//! until the next call. Binary fields are standard base64. `dispatch` lists
//! the operations.
//!
//! Typed text lives only in this module's memory (one rolling buffer per
//! tab), never in storage.

mod matching;
mod notice;
mod wire;

use std::cell::RefCell;

use serde_json::{json, Value};

pub use matching::Engine;

/// Why a request failed, in words for the extension's status page.
pub type Failure = String;

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::default());
    static REPLY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Handles one JSON request against the module's engine.
pub fn handle(request: &[u8]) -> Value {
    let outcome = serde_json::from_slice::<Value>(request)
        .map_err(|e| format!("the request is not JSON ({e})"))
        .and_then(|request| ENGINE.with(|engine| dispatch(&mut engine.borrow_mut(), &request)));
    match outcome {
        Ok(value) => json!({ "ok": value }),
        Err(error) => json!({ "error": error }),
    }
}

fn dispatch(engine: &mut Engine, request: &Value) -> Result<Value, Failure> {
    let op = request["op"].as_str().unwrap_or_default();
    match op {
        "parse_token" => wire::parse_token(request),
        "enrol_request" => wire::enrol_request(request),
        "enrol_response" => wire::enrol_response(request),
        "event_body" => wire::event_body(request),
        "event_batch" => wire::event_batch(request),
        "batch_reply" => wire::batch_reply(request),
        "heartbeat_body" => wire::heartbeat_body(request),
        "heartbeat_reply" => wire::heartbeat_reply(request),
        "subscribe_body" => wire::subscribe_body(request),
        "rekey_message" => wire::rekey_message(request),
        "rekey_request" => wire::rekey_request(request),
        "event_rebody" => wire::event_rebody(request),
        "notice_ack_body" => notice::ack_body(request),
        "notice_ack_reply" => wire::notice_ack_reply(request),
        "shadow_report" => Ok(engine.shadow_report()),
        "signed" => wire::signed(request),
        "rules_update" => engine.rules_update(request),
        "observe_page" => engine.observe_page(request),
        "typed" => engine.typed(request),
        "typed_reset" => engine.typed_reset(request),
        "status" => Ok(engine.status()),
        other => Err(format!("unknown operation `{other}`")),
    }
}

/// Memory for a request of `len` bytes, handed to [`tutela_call`].
#[allow(unsafe_code)] // an exported name, as WebAssembly exports need
#[no_mangle]
pub extern "C" fn tutela_alloc(len: usize) -> *mut u8 {
    let mut buffer = Vec::<u8>::with_capacity(len.max(1));
    let ptr = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    ptr
}

/// Handles the request at `ptr` (from [`tutela_alloc`] with `len`, which this
/// frees) and returns the reply: a `u32` little-endian length, then JSON.
///
/// # Safety
/// `ptr` must come from `tutela_alloc(len)` and hold `len` written bytes.
#[allow(unsafe_code)]
#[no_mangle]
pub unsafe extern "C" fn tutela_call(ptr: *mut u8, len: usize) -> *const u8 {
    // SAFETY: the caller passes back exactly what tutela_alloc(len) gave it,
    // with `len` bytes written; the vector takes ownership and frees it.
    let request = unsafe { Vec::from_raw_parts(ptr, len, len.max(1)) };
    let reply = serde_json::to_vec(&handle(&request)).unwrap_or_else(|_| b"{}".to_vec());
    REPLY.with(|out| {
        let mut out = out.borrow_mut();
        out.clear();
        out.extend_from_slice(&(reply.len() as u32).to_le_bytes());
        out.extend_from_slice(&reply);
        out.as_ptr()
    })
}

/// A bare WebAssembly module has no randomness; nothing here needs any.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
fn no_randomness(_: &mut [u8]) -> Result<(), getrandom::Error> {
    Err(getrandom::Error::UNSUPPORTED)
}
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
getrandom::register_custom_getrandom!(no_randomness);

#[cfg(test)]
mod tests;
