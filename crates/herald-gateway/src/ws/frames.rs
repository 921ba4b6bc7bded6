//! Client frames to messages, with no IO: the part of the transport that an attacker's bytes
//! reach first, kept pure so it can be unit-tested and fuzzed (`fuzz/fuzz_targets/ws_frames.rs`).
//!
//! Frame parsing is actix-http's `ws::Codec` (masking, reserved bits, opcodes, control-frame
//! rules, fragment sequencing). That parser compares a frame's length with its limit only once
//! the whole frame has arrived, so a header announcing 2^62 bytes would make the reader buffer
//! everything that follows. [`FrameReader::decode`] therefore checks every frame's header
//! itself before the codec sees it:
//!
//! - a data frame whose declared length is over the message limit, or a continuation that
//!   would take the reassembled message over it, is refused with 1009 at once;
//! - a control frame declaring more than 125 bytes is refused with 1002 at once.
//!
//! So the unparsed input never holds more than one frame of at most the limit plus its
//! header ([`FrameReader::max_buffered`] adds one read chunk), and the reassembled message
//! never more than the limit.

use actix_http::ws::{CloseReason, Codec, Frame, Item, ProtocolError};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use herald_protocol::CloseCode;
use std::io;
use tokio_util::codec::Decoder;

/// The longest client frame header: 2 bytes, an 8-byte extended length and a 4-byte mask.
pub const MAX_HEADER: usize = 14;

/// Payload bytes a control frame (close, ping, pong) may carry (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A complete message from the client.
#[derive(Debug)]
pub enum Message {
    Text(ByteString),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    Close(Option<CloseReason>),
    /// A fragment of a message that is not complete yet. Returned so that every frame the
    /// client sends reaches the session's rate limit, not only complete messages.
    Fragment,
}

/// Why reading failed: a protocol violation to answer with a close code, or a dead connection.
#[derive(Debug)]
pub enum WsError {
    /// Close with this code; the text says what was wrong.
    Close(CloseCode, String),
    /// The connection is gone (reset, EOF, IO error): nothing more can be sent.
    Gone,
}

/// What a frame header declares, once enough of it has arrived.
#[derive(Debug, PartialEq, Eq)]
struct Declared {
    opcode: u8,
    len: u64,
}

/// Reads the opcode and declared payload length from the start of `buf`; `None` until the
/// length bytes are all there. Everything else in the header is left to the codec.
fn declared(buf: &[u8]) -> Option<Declared> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let len = match b1 & 0x7f {
        126 => u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
        127 => {
            let ext: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            u64::from_be_bytes(ext)
        }
        n => u64::from(n),
    };
    Some(Declared {
        opcode: b0 & 0x0f,
        len,
    })
}

/// Maps a frame-parser error to its close code: oversized frames are 1009, everything else a
/// protocol error 1002 (invalid UTF-8 is detected here, after reassembly, and is 1007).
fn parse_error(e: ProtocolError) -> WsError {
    match e {
        ProtocolError::Overflow => WsError::Close(
            CloseCode::MessageTooBig,
            "frame larger than the limit".into(),
        ),
        ProtocolError::Io(io) if io.kind() != io::ErrorKind::InvalidData => WsError::Gone,
        other => WsError::Close(CloseCode::ProtocolError, other.to_string()),
    }
}

fn text(bytes: Bytes) -> Result<Message, WsError> {
    ByteString::try_from(bytes).map(Message::Text).map_err(|_| {
        WsError::Close(
            CloseCode::InvalidPayload,
            "text message is not valid UTF-8".into(),
        )
    })
}

fn too_big(what: &str) -> WsError {
    WsError::Close(
        CloseCode::MessageTooBig,
        format!("{what} larger than the limit"),
    )
}

/// Turns a client's bytes into messages: header checks, the codec, reassembly of fragments
/// and UTF-8 validation of text.
pub struct FrameReader {
    codec: Codec,
    /// A fragmented message being reassembled: (is text, bytes so far).
    partial: Option<(bool, BytesMut)>,
    max_message: usize,
}

impl FrameReader {
    pub fn new(max_message: usize) -> FrameReader {
        FrameReader {
            codec: Codec::new().max_size(max_message),
            partial: None,
            max_message,
        }
    }

    /// The most unparsed input a connection needs to hold: one frame at the limit with its
    /// header, plus what one read may add past it.
    pub fn max_buffered(&self, read_chunk: usize) -> usize {
        self.max_message + MAX_HEADER + read_chunk
    }

    /// Bytes of heap held for a message being reassembled.
    pub fn partial_capacity(&self) -> usize {
        self.partial.as_ref().map_or(0, |(_, b)| b.capacity())
    }

    /// Refuses the frame at the start of `buf` on its header alone, before its payload is
    /// buffered, if it can never be accepted.
    fn check_header(&self, buf: &[u8]) -> Result<(), WsError> {
        let Some(d) = declared(buf) else {
            return Ok(());
        };
        if d.opcode >= 0x8 {
            if d.len > MAX_CONTROL_PAYLOAD {
                return Err(WsError::Close(
                    CloseCode::ProtocolError,
                    "control frame payload over 125 bytes".into(),
                ));
            }
            return Ok(());
        }
        let so_far = if d.opcode == 0x0 {
            self.partial.as_ref().map_or(0, |(_, b)| b.len() as u64)
        } else {
            0
        };
        if so_far.saturating_add(d.len) > self.max_message as u64 {
            return Err(too_big(if so_far > 0 {
                "fragmented message"
            } else {
                "frame"
            }));
        }
        Ok(())
    }

    /// Parses the next frame in `buf`: a complete message, or [`Message::Fragment`] for a
    /// fragment of one still being reassembled; `Ok(None)` when more input is needed.
    /// Consumed bytes are removed from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        self.check_header(buf)?;
        let Some(frame) = self.codec.decode(buf).map_err(parse_error)? else {
            return Ok(None);
        };
        let msg = match frame {
            Frame::Text(b) => text(b)?,
            Frame::Binary(b) => Message::Binary(b),
            Frame::Ping(b) => Message::Ping(b),
            Frame::Pong(_) => Message::Pong,
            Frame::Close(r) => Message::Close(r),
            Frame::Continuation(item) => self.continuation(item)?.unwrap_or(Message::Fragment),
        };
        Ok(Some(msg))
    }

    fn continuation(&mut self, item: Item) -> Result<Option<Message>, WsError> {
        let (first, is_text, last, chunk) = match item {
            Item::FirstText(b) => (true, true, false, b),
            Item::FirstBinary(b) => (true, false, false, b),
            Item::Continue(b) => (false, false, false, b),
            Item::Last(b) => (false, false, true, b),
        };
        if first {
            self.partial = Some((is_text, BytesMut::from(&chunk[..])));
        } else if let Some((_, buf)) = self.partial.as_mut() {
            // The codec already refuses a continuation that was never started, and the header
            // check keeps the total within the limit.
            buf.extend_from_slice(&chunk);
        }
        let size = self.partial.as_ref().map_or(0, |(_, b)| b.len());
        if size > self.max_message {
            self.partial = None;
            return Err(too_big("reassembled message"));
        }
        if !last {
            return Ok(None);
        }
        match self.partial.take() {
            Some((true, buf)) => text(buf.freeze()).map(Some),
            Some((false, buf)) => Ok(Some(Message::Binary(buf.freeze()))),
            None => Err(WsError::Close(
                CloseCode::ProtocolError,
                "continuation not started".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header (no payload) declaring `len` bytes.
    fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if len < 126 {
            f.push(0x80 | len as u8);
        } else if len <= u64::from(u16::MAX) {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&len.to_be_bytes());
        }
        f.extend_from_slice(&[0, 0, 0, 0]); // a zero mask: the payload is sent as is
        f
    }

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = header(fin, opcode, payload.len() as u64);
        f.extend_from_slice(payload);
        f
    }

    fn close_code(r: Result<Option<Message>, WsError>) -> CloseCode {
        match r {
            Err(WsError::Close(c, _)) => c,
            other => panic!("expected a close, got {other:?}"),
        }
    }

    #[test]
    fn a_huge_declared_length_is_refused_on_the_header_alone() {
        for len in [1025u64, 70_000, 1 << 62, u64::MAX] {
            let mut r = FrameReader::new(1024);
            // Only the length bytes: no mask yet, no payload.
            let h = header(true, 0x1, len);
            let mut buf = BytesMut::from(&h[..h.len() - 4]);
            assert_eq!(
                close_code(r.decode(&mut buf)),
                CloseCode::MessageTooBig,
                "{len}"
            );
        }
        // Exactly at the limit: waits for the payload.
        let mut r = FrameReader::new(1024);
        let mut buf = BytesMut::from(&header(true, 0x2, 1024)[..]);
        assert!(matches!(r.decode(&mut buf), Ok(None)));
    }

    #[test]
    fn a_fragment_that_would_take_the_message_over_the_limit_is_refused_on_its_header() {
        let mut r = FrameReader::new(1000);
        let mut buf = BytesMut::from(&frame(false, 0x1, &[b'a'; 600])[..]);
        assert!(matches!(r.decode(&mut buf), Ok(Some(Message::Fragment))));
        buf.extend_from_slice(&header(false, 0x0, 400));
        assert!(
            matches!(r.decode(&mut buf), Ok(None)),
            "600 + 400 is the limit"
        );
        buf.extend_from_slice(&[b'a'; 400]);
        assert!(matches!(r.decode(&mut buf), Ok(Some(Message::Fragment))));
        buf.extend_from_slice(&header(true, 0x0, 1));
        assert_eq!(close_code(r.decode(&mut buf)), CloseCode::MessageTooBig);
    }

    #[test]
    fn a_control_frame_declaring_more_than_125_bytes_is_refused_on_its_header() {
        for op in [0x8, 0x9, 0xA] {
            let mut r = FrameReader::new(1 << 20);
            let mut buf = BytesMut::from(&header(true, op, 126)[..4]);
            assert_eq!(close_code(r.decode(&mut buf)), CloseCode::ProtocolError);
        }
    }

    #[test]
    fn frames_split_anywhere_decode_to_the_same_messages() {
        let mut raw = frame(false, 0x1, "héllo ".as_bytes());
        raw.extend(frame(true, 0x9, b"p"));
        raw.extend(frame(false, 0x0, b"wor"));
        raw.extend(frame(true, 0x0, b"ld"));
        raw.extend(frame(true, 0x2, &[7u8; 300]));
        for cut in 0..raw.len() {
            let mut r = FrameReader::new(1024);
            let mut buf = BytesMut::from(&raw[..cut]);
            let mut got = Vec::new();
            while let Some(m) = r.decode(&mut buf).expect("valid input") {
                got.push(m);
            }
            buf.extend_from_slice(&raw[cut..]);
            while let Some(m) = r.decode(&mut buf).expect("valid input") {
                got.push(m);
            }
            // Every frame comes out: the two fragments before the last as `Fragment`.
            let fragments = got
                .iter()
                .filter(|m| matches!(m, Message::Fragment))
                .count();
            assert_eq!(fragments, 2, "cut at {cut}: {got:?}");
            got.retain(|m| !matches!(m, Message::Fragment));
            assert_eq!(got.len(), 3, "cut at {cut}: {got:?}");
            assert!(matches!(&got[0], Message::Ping(p) if &p[..] == b"p"));
            assert!(matches!(&got[1], Message::Text(t) if &**t == "héllo world"));
            assert!(matches!(&got[2], Message::Binary(b) if b.len() == 300));
            assert!(buf.is_empty());
        }
    }
}
