//! A small, bounded RESP2 reader and command writer for the cluster bus's own connections.
//!
//! Every length a frame declares is checked against [`Limits`] as soon as its header line is
//! read, before the body is waited for or buffered, so a peer (or a corrupted stream) cannot
//! make a connection buffer more than one frame at the limit. Pure: [`parse`] takes bytes
//! and returns a frame and how many bytes it used, or asks for more.

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR …`
    Error(String),
    /// `:12`
    Int(i64),
    /// `$n` (`None` for `$-1`)
    Bulk(Option<Vec<u8>>),
    /// `*n` (`None` for `*-1`)
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(b)) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// A bulk or simple string as UTF-8.
    pub(crate) fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => self.as_str().and_then(|s| s.parse().ok()),
        }
    }

    pub(crate) fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(a)) => Some(a),
            _ => None,
        }
    }
}

/// What a connection accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest bulk string (a message payload).
    pub(crate) max_bulk: usize,
    /// Most elements in one array.
    pub(crate) max_array: usize,
    /// Deepest nesting of arrays.
    pub(crate) max_depth: usize,
}

/// Limits of a subscriber connection: a payload at most 4 MiB (a bus frame is one rendered
/// notification or read event; the publish body is capped at 1 MiB), frames of at most 4
/// elements (`smessage`, `ssubscribe`, `sunsubscribe` and `pong` have 2 or 3), not nested. So
/// a connection never holds more than one frame of 16 MiB unparsed.
pub(crate) const SUBSCRIBER: Limits = Limits {
    max_bulk: 4 << 20,
    max_array: 4,
    max_depth: 1,
};

/// Limits of a topology reply (`CLUSTER SLOTS`): up to 16,384 ranges with a few nodes each.
pub(crate) const TOPOLOGY: Limits = Limits {
    max_bulk: 1 << 10,
    max_array: 16_384,
    max_depth: 5,
};

/// Longest header line (`$123\r\n`, `-ERR …\r\n`).
const MAX_LINE: usize = 4 << 10;

/// A stream that breaks the protocol or a limit: the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RespError {
    #[error("bulk string of {0} bytes is over the limit")]
    BulkTooLong(i64),
    #[error("array of {0} elements is over the limit")]
    ArrayTooLong(i64),
    #[error("arrays nested too deep")]
    TooDeep,
    #[error("header line over {MAX_LINE} bytes")]
    LineTooLong,
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Parses one value from the start of `buf`: `Ok(Some((value, used)))`, `Ok(None)` when more
/// bytes are needed, or an error when the stream is unusable.
pub(crate) fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, RespError> {
    parse_at(buf, 0, limits, 0)
}

fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = buf.get(at..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i > MAX_LINE => Err(RespError::LineTooLong),
        Some(i) => Ok(Some((&rest[..i], at + i + 2))),
        None if rest.len() > MAX_LINE => Err(RespError::LineTooLong),
        None => Ok(None),
    }
}

fn int(bytes: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            RespError::Protocol(format!("bad integer {:?}", String::from_utf8_lossy(bytes)))
        })
}

fn parse_at(
    buf: &[u8],
    at: usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<(Value, usize)>, RespError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((head, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    match kind {
        b'+' => Ok(Some((
            Value::Simple(String::from_utf8_lossy(head).into_owned()),
            next,
        ))),
        b'-' => Ok(Some((
            Value::Error(String::from_utf8_lossy(head).into_owned()),
            next,
        ))),
        b':' => Ok(Some((Value::Int(int(head)?), next))),
        b'$' => {
            let n = int(head)?;
            if n == -1 {
                return Ok(Some((Value::Bulk(None), next)));
            }
            // The limit applies to the declared length, before any of the body is awaited.
            let len = usize::try_from(n)
                .ok()
                .filter(|&l| l <= limits.max_bulk)
                .ok_or(RespError::BulkTooLong(n))?;
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::Protocol("bulk string without CRLF".to_owned()));
            }
            Ok(Some((Value::Bulk(Some(buf[next..end].to_vec())), end + 2)))
        }
        b'*' => {
            let n = int(head)?;
            if n == -1 {
                return Ok(Some((Value::Array(None), next)));
            }
            let len = usize::try_from(n)
                .ok()
                .filter(|&l| l <= limits.max_array)
                .ok_or(RespError::ArrayTooLong(n))?;
            if depth >= limits.max_depth {
                return Err(RespError::TooDeep);
            }
            let mut items = Vec::with_capacity(len.min(64));
            let mut pos = next;
            for _ in 0..len {
                match parse_at(buf, pos, limits, depth + 1)? {
                    Some((v, p)) => {
                        items.push(v);
                        pos = p;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(Some(items)), pos)))
        }
        other => Err(RespError::Protocol(format!(
            "unknown type byte {other:#04x}"
        ))),
    }
}

/// Appends one command (an array of bulk strings) to `out`.
pub(crate) fn encode<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn parses_a_push_message() {
        let frame = b"*3\r\n$8\r\nsmessage\r\n$6\r\nuser:a\r\n$5\r\nhello\r\n";
        let (v, used) = parse(frame, &SUBSCRIBER).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(
            v,
            Value::Array(Some(vec![bulk("smessage"), bulk("user:a"), bulk("hello")]))
        );
        // Every strict prefix asks for more.
        for cut in 0..frame.len() {
            assert_eq!(
                parse(&frame[..cut], &SUBSCRIBER).unwrap(),
                None,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn an_over_long_bulk_is_refused_on_its_header() {
        // Only the header has arrived: refused without waiting for 5 MiB.
        let frame = format!("*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n${}\r\n", 5 << 20);
        assert_eq!(
            parse(frame.as_bytes(), &SUBSCRIBER),
            Err(RespError::BulkTooLong(5 << 20))
        );
        assert_eq!(
            parse(b"*5\r\n", &SUBSCRIBER),
            Err(RespError::ArrayTooLong(5))
        );
        assert_eq!(parse(b"*1\r\n*1\r\n", &SUBSCRIBER), Err(RespError::TooDeep));
        assert_eq!(
            parse(b"$-2\r\n", &SUBSCRIBER),
            Err(RespError::BulkTooLong(-2))
        );
        assert!(parse(b"?x\r\n", &SUBSCRIBER).is_err());
        let long = vec![b'+'; MAX_LINE + 10];
        assert_eq!(parse(&long, &SUBSCRIBER), Err(RespError::LineTooLong));
    }

    #[test]
    fn simple_types() {
        assert_eq!(
            parse(b"-MOVED 12 127.0.0.1:7002\r\n", &SUBSCRIBER).unwrap(),
            Some((Value::Error("MOVED 12 127.0.0.1:7002".into()), 26))
        );
        assert_eq!(
            parse(b":42\r\n+OK\r\n", &SUBSCRIBER).unwrap(),
            Some((Value::Int(42), 5))
        );
        assert_eq!(
            parse(b"$-1\r\n", &SUBSCRIBER).unwrap(),
            Some((Value::Bulk(None), 5))
        );
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            "[a-zA-Z0-9 ]{0,20}".prop_map(Value::Simple),
            "[a-zA-Z0-9 ]{0,20}".prop_map(Value::Error),
            any::<i64>().prop_map(Value::Int),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))
                .prop_map(Value::Bulk),
        ];
        leaf.prop_recursive(1, 16, 8, |inner| {
            proptest::option::of(proptest::collection::vec(inner, 0..8)).prop_map(Value::Array)
        })
    }

    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Value::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Value::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Value::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Value::Bulk(Some(b)) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Value::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Value::Array(Some(a)) => {
                out.extend_from_slice(format!("*{}\r\n", a.len()).as_bytes());
                for x in a {
                    write(x, out);
                }
            }
        }
    }

    /// Roomier than a subscriber connection, for arbitrary values.
    const ANY: Limits = Limits {
        max_bulk: 1 << 10,
        max_array: 16,
        max_depth: 4,
    };

    proptest! {
        /// Any sequence of values, split anywhere, reads back the same values.
        #[test]
        fn round_trips_in_any_split(values in proptest::collection::vec(value(), 1..6), split in any::<prop::sample::Index>()) {
            let mut bytes = Vec::new();
            for v in &values {
                write(v, &mut bytes);
            }
            let cut = split.index(bytes.len() + 1);
            let mut buf = bytes[..cut].to_vec();
            let mut got = Vec::new();
            let mut fed = cut;
            loop {
                match parse(&buf, &ANY).unwrap() {
                    Some((v, used)) => {
                        got.push(v);
                        buf.drain(..used);
                    }
                    None if fed < bytes.len() => {
                        buf.extend_from_slice(&bytes[fed..]);
                        fed = bytes.len();
                    }
                    None => break,
                }
            }
            prop_assert_eq!(got, values);
        }

        #[test]
        fn encode_is_read_back(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..32), 1..8)) {
            let mut out = Vec::new();
            encode(&mut out, &args);
            let (v, used) = parse(&out, &ANY).unwrap().unwrap();
            prop_assert_eq!(used, out.len());
            let want = Value::Array(Some(args.into_iter().map(|a| Value::Bulk(Some(a))).collect()));
            prop_assert_eq!(v, want);
        }
    }
}
