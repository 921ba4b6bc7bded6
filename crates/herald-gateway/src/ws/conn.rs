//! A lean server-side WebSocket over the raw TCP stream of an upgraded connection.
//!
//! Why not actix-ws: after an actix-ws upgrade the HTTP dispatcher stays alive for the whole
//! life of the socket, with its 8 KiB read and write buffers, a payload channel and the codec's
//! own buffer: about 25 KiB of RSS per idle connection. Here the connection is handed over by
//! actix-http's upgrade hook (`startup.rs`), the dispatcher ends, and a socket owns only the
//! stream, the frame codec's two flag bytes and a read buffer that is **empty while idle**:
//!
//! - reads go through a stack chunk into `rbuf` only when the kernel says bytes are waiting,
//!   and `rbuf` is given back (replaced by an unallocated `BytesMut`) whenever it has been
//!   fully consumed, so an idle socket holds no read buffer at all;
//! - writes do not buffer: the frame header is built on the stack and written together with
//!   the payload with vectored writes straight to the socket. The one exception is a
//!   handshake's first write (101, `connected`, first batch), gathered in `pending` so it is a
//!   single syscall, and released once sent.
//!
//! Turning bytes into messages (header checks that refuse an oversized frame before its payload
//! is read, actix-http's frame parser, reassembly, UTF-8 validation) is the IO-free
//! [`FrameReader`](super::frames::FrameReader).
//!
//! [`WsConn::recv`] is cancel-safe: every byte read is kept in `self`, so the session may drop
//! a pending `recv` in a `select!` without losing input. A write cut short (timeout, kill)
//! leaves half a frame on the wire; the connection is then marked broken and only dropped.

use std::io::{self, IoSlice};
use std::task::{Context, Waker};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::frames::FrameReader;
pub use super::frames::{Message, WsError};

/// Bytes read from the kernel per `read` call (a stack buffer; nothing is kept between reads).
const READ_CHUNK: usize = 8 * 1024;

/// Returned by writes when the connection can no longer be written to.
#[derive(Debug)]
pub struct Closed;

pub struct WsConn {
    io: TcpStream,
    /// Unparsed input. Unallocated (capacity 0) whenever everything read has been consumed.
    rbuf: BytesMut,
    /// Header checks, frame parsing and reassembly; never holds more than the message limit.
    reader: FrameReader,
    /// A write was interrupted mid-frame, or the peer is gone: never write again.
    broken: bool,
    /// Bytes to send before the next frame: the 101 response and frames queued with
    /// [`WsConn::queue_text`], so a handshake goes out in one write. Unallocated when empty.
    pending: Vec<u8>,
    /// EOF or a read error was seen.
    eof: bool,
}

/// What is left of a frame (header, payload) after its first `done` bytes.
fn split_at_written<'a>(head: &'a [u8], body: &'a [u8], done: usize) -> (&'a [u8], &'a [u8]) {
    let from_head = done.min(head.len());
    (&head[from_head..], &body[done - from_head..])
}

/// The header of an unmasked server frame with FIN set.
fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    let n = if len < 126 {
        h[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (h, n)
}

impl WsConn {
    /// Wraps an upgraded stream; `leftover` is whatever the HTTP layer read past the request
    /// head (a client may send its first frame without waiting for the 101). `unsent` bytes
    /// (the 101 response) go out with the first frame: pass them only for sockets that write
    /// before they read, since the client waits for the 101.
    pub fn new(io: TcpStream, leftover: BytesMut, unsent: &[u8], max_message: usize) -> WsConn {
        let rbuf = if leftover.is_empty() {
            BytesMut::new()
        } else {
            BytesMut::from(&leftover[..])
        };
        // The HTTP dispatcher that read the request left its task's waker in the stream's
        // read (and maybe write) slot; that waker keeps the finished dispatcher task (~2 KiB)
        // allocated until the next readiness event, which for an idle client may be minutes
        // away. Replace both with no-op wakers now.
        let mut cx = Context::from_waker(Waker::noop());
        let _ = io.poll_read_ready(&mut cx);
        let _ = io.poll_write_ready(&mut cx);
        WsConn {
            io,
            rbuf,
            reader: FrameReader::new(max_message),
            broken: false,
            eof: false,
            pending: unsent.to_vec(),
        }
    }

    /// The next complete message, `None` once the connection is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message, WsError>> {
        loop {
            match self.decode() {
                Ok(Some(m)) => return Some(Ok(m)),
                Ok(None) => {}
                Err(WsError::Gone) => return None,
                Err(e) => return Some(Err(e)),
            }
            if self.eof {
                return None;
            }
            // `poll_read_ready` keeps one waker in the stream's own slot (no waiter node in
            // this future) and replaces whatever waker was there before.
            if std::future::poll_fn(|cx| self.io.poll_read_ready(cx))
                .await
                .is_err()
            {
                self.eof = true;
                return None;
            }
            match self.fill() {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => self.eof = true,
            }
        }
    }

    /// One non-blocking read into `rbuf` through a stack chunk. The reader refuses any frame
    /// header that announces more than the message limit before its payload is read, so
    /// `rbuf` holds at most one acceptable frame plus one chunk.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; READ_CHUNK];
        let n = self.io.try_read(&mut chunk)?;
        self.rbuf.extend_from_slice(&chunk[..n]);
        debug_assert!(self.rbuf.len() <= self.reader.max_buffered(READ_CHUNK));
        Ok(n)
    }

    /// Parses buffered input into the next complete message.
    fn decode(&mut self) -> Result<Option<Message>, WsError> {
        let msg = self.reader.decode(&mut self.rbuf);
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            // Give the buffer back: an idle socket holds no read memory. Payloads split off it
            // keep their part alive only until the message is handled.
            self.rbuf = BytesMut::new();
        }
        msg
    }

    /// Writes as much of a frame as the socket takes right now, without waiting: `None` when
    /// the whole frame went out (the common case: no future, no buffer), otherwise how many
    /// bytes did, to be completed with [`WsConn::finish_frame`].
    pub fn try_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<Option<usize>, Closed> {
        if self.broken {
            return Err(Closed);
        }
        if !self.pending.is_empty() {
            self.queue_frame(opcode, payload);
            // The frame is now part of `pending`; `finish_frame` flushes what is left of it.
            return self.try_flush().map(|done| (!done).then_some(0));
        }
        let (h, hlen) = header(opcode, payload.len());
        let mut done = 0;
        loop {
            let (head, body) = split_at_written(&h[..hlen], payload, done);
            if head.is_empty() && body.is_empty() {
                return Ok(None);
            }
            match self
                .io
                .try_write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            {
                Ok(0) => {
                    self.broken = true;
                    return Err(Closed);
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(done)),
                Err(_) => {
                    self.broken = true;
                    return Err(Closed);
                }
            }
        }
    }

    /// Completes a frame of which `written` bytes are already on the wire.
    pub async fn finish_frame(
        &mut self,
        opcode: u8,
        payload: &[u8],
        written: usize,
    ) -> Result<(), Closed> {
        if self.broken {
            return Err(Closed);
        }
        if !self.pending.is_empty() {
            return self.flush().await;
        }
        let (h, hlen) = header(opcode, payload.len());
        // Set until the whole frame is out: a write dropped half-way leaves it set.
        self.broken = true;
        let mut done = written;
        loop {
            let (head, body) = split_at_written(&h[..hlen], payload, done);
            if head.is_empty() && body.is_empty() {
                break;
            }
            match self
                .io
                .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
                .await
            {
                Ok(0) | Err(_) => return Err(Closed),
                Ok(n) => done += n,
            }
        }
        self.broken = false;
        Ok(())
    }

    /// Appends a text frame to the bytes sent with the next write (see `pending`).
    pub fn queue_text(&mut self, text: &str) {
        self.queue_frame(0x1, text.as_bytes());
    }

    /// Writes what [`WsConn::queue_text`] queued, if anything (a Socket.IO `connected` that no
    /// frame follows).
    pub async fn flush_queued(&mut self) -> Result<(), Closed> {
        if self.broken {
            return Err(Closed);
        }
        if self.pending.is_empty() || self.try_flush()? {
            return Ok(());
        }
        self.flush().await
    }

    fn queue_frame(&mut self, opcode: u8, payload: &[u8]) {
        let (h, hlen) = header(opcode, payload.len());
        self.pending.extend_from_slice(&h[..hlen]);
        self.pending.extend_from_slice(payload);
    }

    /// Writes what the socket takes of `pending` now; true when all of it went out.
    fn try_flush(&mut self) -> Result<bool, Closed> {
        let mut done = 0;
        let result = loop {
            if done == self.pending.len() {
                break Ok(true);
            }
            match self.io.try_write(&self.pending[done..]) {
                Ok(0) => break Err(Closed),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(_) => break Err(Closed),
            }
        };
        match result {
            Ok(true) => self.pending = Vec::new(),
            Ok(false) => {
                // Part of a frame may be out: until the rest is, nothing else may be written.
                self.pending.drain(..done);
            }
            Err(Closed) => self.broken = true,
        }
        result
    }

    /// Writes all of `pending`, waiting for the socket.
    async fn flush(&mut self) -> Result<(), Closed> {
        self.broken = true;
        if self.io.write_all(&self.pending).await.is_err() {
            return Err(Closed);
        }
        self.pending = Vec::new();
        self.broken = false;
        Ok(())
    }

    async fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), Closed> {
        match self.try_frame(opcode, payload)? {
            None => Ok(()),
            Some(written) => self.finish_frame(opcode, payload, written).await,
        }
    }

    pub async fn text(&mut self, text: &str) -> Result<(), Closed> {
        self.write_frame(0x1, text.as_bytes()).await
    }

    pub async fn binary(&mut self, bytes: &[u8]) -> Result<(), Closed> {
        self.write_frame(0x2, bytes).await
    }

    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Closed> {
        self.write_frame(0x9, payload).await
    }

    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), Closed> {
        self.write_frame(0xA, payload).await
    }

    /// Sends a close frame (`None`: an empty one); the reason is truncated to fit.
    pub async fn close(&mut self, reason: Option<(u16, &str)>) -> Result<(), Closed> {
        let mut payload = Vec::new();
        if let Some((code, text)) = reason {
            payload.extend_from_slice(&code.to_be_bytes());
            let mut end = text.len().min(123);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            payload.extend_from_slice(&text.as_bytes()[..end]);
        }
        self.write_frame(0x8, &payload).await?;
        let _ = self.io.flush().await;
        Ok(())
    }

    /// Whether the connection can still be written to.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Bytes of heap this connection holds for input right now (for tests and metrics).
    pub fn buffered_capacity(&self) -> usize {
        self.rbuf.capacity() + self.reader.partial_capacity() + self.pending.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_protocol::CloseCode;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            f.push(0x80 | len as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        let mask = [1u8, 2, 3, 4];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// A connected pair: the server side wrapped in a `WsConn`, the client side raw.
    async fn pair(max: usize) -> (WsConn, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (WsConn::new(server, BytesMut::new(), &[], max), client)
    }

    async fn first_error(raw: Vec<u8>, max: usize) -> WsError {
        let (mut ws, mut client) = pair(max).await;
        client.write_all(&raw).await.unwrap();
        client.shutdown().await.unwrap();
        loop {
            match ws.recv().await {
                Some(Err(e)) => return e,
                Some(Ok(_)) => continue,
                None => panic!("no error before EOF"),
            }
        }
    }

    fn code(e: WsError) -> CloseCode {
        match e {
            WsError::Close(c, _) => c,
            WsError::Gone => panic!("expected a close code, got Gone"),
        }
    }

    #[tokio::test]
    async fn codec_errors_map_to_their_close_codes() {
        let big = first_error(frame(true, 0x1, &[b'a'; 300]), 256).await;
        assert_eq!(code(big), CloseCode::MessageTooBig);

        let mut pieces = frame(false, 0x1, &[b'a'; 200]);
        pieces.extend(frame(true, 0x0, &[b'a'; 200]));
        assert_eq!(
            code(first_error(pieces, 256).await),
            CloseCode::MessageTooBig
        );

        let utf8 = first_error(frame(true, 0x1, &[0xce, 0xba, 0xff, 0xfe]), 256).await;
        assert_eq!(code(utf8), CloseCode::InvalidPayload);

        let mut utf8_pieces = frame(false, 0x1, &[b'a', 0xce]);
        utf8_pieces.extend(frame(true, 0x0, &[0xff]));
        assert_eq!(
            code(first_error(utf8_pieces, 256).await),
            CloseCode::InvalidPayload
        );

        let mut rsv = frame(true, 0x1, b"x");
        rsv[0] |= 0x40;
        assert_eq!(code(first_error(rsv, 256).await), CloseCode::ProtocolError);

        let bad_opcode = first_error(frame(true, 0x3, b"x"), 256).await;
        assert_eq!(code(bad_opcode), CloseCode::ProtocolError);

        let mut unmasked = frame(true, 0x1, b"x");
        unmasked[1] &= 0x7f;
        unmasked.drain(2..6);
        assert_eq!(
            code(first_error(unmasked, 256).await),
            CloseCode::ProtocolError
        );

        let stray = first_error(frame(true, 0x0, b"x"), 256).await;
        assert_eq!(code(stray), CloseCode::ProtocolError);
    }

    #[tokio::test]
    async fn reassembles_fragments_with_control_frames_between() {
        let (mut ws, mut client) = pair(1024).await;
        let mut raw = frame(false, 0x1, "héllo ".as_bytes());
        raw.extend(frame(true, 0x9, b"p"));
        raw.extend(frame(false, 0x0, b"wor"));
        raw.extend(frame(true, 0x0, b"ld"));
        // Split a frame across two writes: the parser must wait for the rest.
        let (a, b) = raw.split_at(5);
        client.write_all(a).await.unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        client.write_all(b).await.unwrap();
        let mut next = async || loop {
            match ws.recv().await {
                Some(Ok(Message::Fragment)) => continue,
                other => return other,
            }
        };
        match next().await {
            Some(Ok(Message::Ping(p))) => assert_eq!(&p[..], b"p"),
            other => panic!("expected the ping first, got {other:?}"),
        }
        match next().await {
            Some(Ok(Message::Text(t))) => assert_eq!(&*t, "héllo world"),
            other => panic!("expected the text, got {other:?}"),
        }
        // Everything was consumed: no read buffer is held while idle.
        assert_eq!(ws.buffered_capacity(), 0);
        client
            .write_all(&frame(true, 0x8, &[0x03, 0xe8]))
            .await
            .unwrap();
        assert!(matches!(ws.recv().await, Some(Ok(Message::Close(Some(_))))));
        drop(client);
        assert!(ws.recv().await.is_none());
    }

    #[tokio::test]
    async fn unsent_bytes_and_queued_frames_go_out_with_the_next_frame_in_order() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let mut ws = WsConn::new(server, BytesMut::new(), b"HTTP/1.1 101 X\r\n\r\n", 64);
        ws.queue_text("one");
        assert!(ws.buffered_capacity() > 0);
        assert_eq!(
            ws.try_frame(0x1, b"two").unwrap(),
            None,
            "loopback takes it all"
        );
        assert_eq!(ws.buffered_capacity(), 0, "pending released once sent");
        let mut got = vec![0u8; 18 + 5 + 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..18], b"HTTP/1.1 101 X\r\n\r\n");
        assert_eq!(
            &got[18..],
            &[0x81, 3, b'o', b'n', b'e', 0x81, 3, b't', b'w', b'o']
        );
    }

    #[tokio::test]
    async fn writes_unmasked_frames_of_every_length_class() {
        let (mut ws, mut client) = pair(1024).await;
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let payload = "x".repeat(len);
            ws.text(&payload).await.unwrap();
            let mut h = [0u8; 2];
            client.read_exact(&mut h).await.unwrap();
            assert_eq!(h[0], 0x81);
            assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
            let n = match h[1] {
                126 => client.read_u16().await.unwrap() as usize,
                127 => client.read_u64().await.unwrap() as usize,
                n => n as usize,
            };
            assert_eq!(n, len);
            let mut body = vec![0u8; n];
            client.read_exact(&mut body).await.unwrap();
            assert!(body.iter().all(|b| *b == b'x'));
        }
        ws.close(Some((4100, &"é".repeat(100)))).await.unwrap();
        let mut h = [0u8; 2];
        client.read_exact(&mut h).await.unwrap();
        assert_eq!(h[0], 0x88);
        assert!(h[1] <= 125, "close payload fits a control frame");
        let mut body = vec![0u8; h[1] as usize];
        client.read_exact(&mut body).await.unwrap();
        assert_eq!(u16::from_be_bytes([body[0], body[1]]), 4100);
        assert!(
            std::str::from_utf8(&body[2..]).is_ok(),
            "cut on a char boundary"
        );
    }
}
