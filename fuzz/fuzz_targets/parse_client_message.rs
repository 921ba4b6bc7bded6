//! `parse_client_message` must never panic: any input either parses or is a `ParseError`.
#![no_main]

use herald_protocol::ws::{parse_client_message, ClientMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A WebSocket text frame is valid UTF-8 (the codec refuses anything else), so only
    // UTF-8 input reaches the parser; lossy conversion keeps the non-UTF-8 inputs useful too.
    let text = String::from_utf8_lossy(data);
    match parse_client_message(&text) {
        Ok(m) => {
            // The accessor used to correlate acks must not panic either.
            let _ = m.rid();
            if let ClientMessage::MarkRead { id, .. } = &m {
                let _ = id.to_string();
            }
        }
        Err(e) => {
            // The error becomes an `error` event: its message must be bounded by the input
            // (the unknown type is truncated to 40 chars; serde's messages are short).
            assert!(
                e.message.len() <= 512 + text.len(),
                "error message unexpectedly long: {} bytes",
                e.message.len()
            );
        }
    }
});
