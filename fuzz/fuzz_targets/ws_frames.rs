//! The WebSocket frame reader (`herald_gateway::ws::frames::FrameReader`) must never panic,
//! and must never hold more than its bounds, whatever bytes a client sends in whatever pieces.
//!
//! Input: the first byte picks the size of the pieces the rest is fed in (1..=256 bytes), so
//! the fuzzer explores frames split at every point as a TCP stream would split them.
#![no_main]

use bytes::BytesMut;
use herald_gateway::ws::frames::{FrameReader, Message, MAX_HEADER};
use libfuzzer_sys::fuzz_target;

/// A small limit, so oversized and fragmented messages are reachable with small inputs.
const MAX_MESSAGE: usize = 512;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece) + 1;
    let mut reader = FrameReader::new(MAX_MESSAGE);
    let mut buf = BytesMut::new();
    for chunk in rest.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match reader.decode(&mut buf) {
                Ok(Some(Message::Text(t))) => assert!(t.len() <= MAX_MESSAGE),
                Ok(Some(Message::Binary(b))) => assert!(b.len() <= MAX_MESSAGE),
                Ok(Some(Message::Ping(p))) => assert!(p.len() <= 125),
                Ok(Some(_)) => {}
                Ok(None) => break,
                // A refusal ends the connection: nothing more is read.
                Err(_) => return,
            }
            // Whatever has been reassembled so far stays within the limit.
            assert!(reader.partial_capacity() <= 2 * MAX_MESSAGE + piece);
        }
        // What is left unparsed is at most one frame that passed its header check.
        assert!(
            buf.len() < MAX_HEADER + MAX_MESSAGE,
            "{} bytes held unparsed",
            buf.len()
        );
    }
});
