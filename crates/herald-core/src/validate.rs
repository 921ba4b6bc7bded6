//! Validation of everything that enters through the publish and broadcast APIs.

use herald_protocol::http::{BroadcastRequest, PublishRequest};

pub const MAX_USER_ID_LEN: usize = 128;
pub const MAX_RECIPIENTS: usize = 1000;
pub const MAX_TYPE_LEN: usize = 64;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 4000;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_DATA_BYTES: usize = 8 * 1024;
pub const MAX_DATA_DEPTH: usize = 16;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field,
        message: message.into(),
    }
}

/// A publish request that passed validation. Recipients are de-duplicated and sorted
/// (sorted order is also the lock order in the store, which rules out deadlocks).
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub recipients: Vec<String>,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub link: Option<String>,
    pub avatar_url: Option<String>,
    pub data: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
    /// `priority` and `fallback` of the call; `None` when they change nothing.
    pub fallback: Option<crate::fallback::FallbackOverride>,
}

/// User ids are opaque strings of 1–128 bytes from `[A-Za-z0-9._~:@+=|-]`.
pub fn validate_user_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > MAX_USER_ID_LEN {
        return Err(err(
            "user_id",
            format!("must be 1 to {MAX_USER_ID_LEN} bytes"),
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._~:@+=|-".contains(&b))
    {
        return Err(err(
            "user_id",
            "may contain only letters, digits and . _ ~ : @ + = | -",
        ));
    }
    Ok(())
}

pub(crate) fn validate_kind(kind: &str) -> Result<(), ValidationError> {
    let ok_len = !kind.is_empty() && kind.len() <= MAX_TYPE_LEN;
    let mut bytes = kind.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok_len && first_ok && rest_ok {
        Ok(())
    } else {
        Err(err(
            "type",
            format!("must be 1 to {MAX_TYPE_LEN} characters from [A-Za-z0-9._:-], starting with a letter or digit (e.g. comment.created)"),
        ))
    }
}

fn validate_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), ValidationError> {
    if required && value.trim().is_empty() {
        return Err(err(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(err(field, format!("must be at most {max} characters")));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(err(field, "must not contain control characters"));
    }
    if value.chars().any(is_spoofing_char) {
        return Err(err(
            field,
            "must not contain bidirectional override or invisible zero-width characters",
        ));
    }
    Ok(())
}

/// Whether `c` can reorder or hide text without being seen: the bidirectional embedding,
/// override and isolate controls (U+202A–U+202E, U+2066–U+2069), the Arabic letter mark
/// (U+061C), and the invisible zero-width space, word joiner and byte-order mark (U+200B, U+2060,
/// U+FEFF). The zero-width joiner and non-joiner (emoji sequences, Persian and Indic scripts)
/// and the left-to-right and right-to-left marks (which reorder nothing) stay allowed.
pub fn is_spoofing_char(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{061C}' | '\u{200B}' | '\u{2060}' | '\u{FEFF}'
    )
}

/// The link rule, shared with the web client's `safeLink` through the test vectors in
/// `crates/herald-protocol/link-vectors.json`. A link is either
///
/// - an absolute `http`/`https` URL with a host, written with `://` (so `https:evil.example`
///   and `https:/evil.example`, which URL parsers repair into an absolute URL, are refused), or
/// - a same-origin path: it starts with one `/` and, resolved against an origin, stays on it
///   with a path that still starts with a single `/` (`/.//evil.example` does not).
///
/// Anywhere in the link, backslashes (browsers read `/\evil.example` as `//evil.example`),
/// whitespace and control characters are refused, and in a path's path part so are encoded
/// slashes and backslashes (`%2F`, `%5C`), which a server may decode before redirecting.
pub fn is_safe_link(link: &str) -> bool {
    if link.is_empty()
        || link
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
    {
        return false;
    }
    if link.starts_with('/') {
        let path = link.split(['?', '#']).next().unwrap_or_default();
        let lower = path.to_ascii_lowercase();
        if link.starts_with("//") || lower.contains("%2f") || lower.contains("%5c") {
            return false;
        }
        let Ok(base) = url::Url::parse("https://origin.invalid/") else {
            return false;
        };
        return base.join(link).is_ok_and(|u| {
            u.origin() == base.origin() && u.path().starts_with('/') && !u.path().starts_with("//")
        });
    }
    let lower = link.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return false;
    }
    url::Url::parse(link).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some_and(|h| !h.is_empty())
            // `http:///evil.example` parses with the host taken from the path: refuse it.
            && !link[u.scheme().len() + 3..].starts_with('/')
    })
}

/// Links and avatars must pass [`is_safe_link`], so a `javascript:` URL or an off-site
/// redirect disguised as a path never reaches a client's `href`.
fn validate_url(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.len() > MAX_URL_LEN {
        return Err(err(field, format!("must be at most {MAX_URL_LEN} bytes")));
    }
    if !is_safe_link(value) {
        return Err(err(
            field,
            "must be an http(s) URL with a host, or a path on this site starting with a single \
             / (no backslash, whitespace, control character or encoded slash)",
        ));
    }
    Ok(())
}

fn json_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn validate_data(data: &Option<serde_json::Value>) -> Result<(), ValidationError> {
    let Some(d) = data else { return Ok(()) };
    if d.is_null() {
        return Ok(());
    }
    if !d.is_object() {
        return Err(err("data", "must be a JSON object"));
    }
    let size = serde_json::to_vec(d).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_DATA_BYTES {
        return Err(err(
            "data",
            format!("must be at most {MAX_DATA_BYTES} bytes as JSON (got {size})"),
        ));
    }
    if json_depth(d) > MAX_DATA_DEPTH {
        return Err(err(
            "data",
            format!("must be nested at most {MAX_DATA_DEPTH} levels deep"),
        ));
    }
    Ok(())
}

fn normalise_optional(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

pub fn validate_publish(req: PublishRequest) -> Result<NewNotification, ValidationError> {
    let mut recipients = match (req.recipient, req.recipients) {
        (Some(one), None) => vec![one],
        (None, Some(list)) => list,
        (Some(_), Some(_)) => {
            return Err(err(
                "recipients",
                "give either recipient or recipients, not both",
            ))
        }
        (None, None) => return Err(err("recipients", "recipient or recipients is required")),
    };
    if recipients.is_empty() {
        return Err(err("recipients", "must not be empty"));
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(err(
            "recipients",
            format!("at most {MAX_RECIPIENTS} recipients per request"),
        ));
    }
    for r in &recipients {
        validate_user_id(r).map_err(|e| err("recipients", format!("{r:?}: {}", e.message)))?;
    }
    recipients.sort_unstable();
    recipients.dedup();
    validate_kind(&req.kind)?;
    validate_text("title", &req.title, MAX_TITLE_CHARS, true)?;
    validate_text("body", &req.body, MAX_BODY_CHARS, false)?;
    let link = normalise_optional(req.link);
    if let Some(l) = &link {
        validate_url("link", l)?;
    }
    let avatar_url = normalise_optional(req.avatar_url);
    if let Some(a) = &avatar_url {
        validate_url("avatar_url", a)?;
    }
    validate_data(&req.data)?;
    let idempotency_key = req.idempotency_key;
    if let Some(k) = &idempotency_key {
        if k.is_empty()
            || k.len() > MAX_IDEMPOTENCY_KEY_LEN
            || !k.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(err(
                "idempotency_key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"),
            ));
        }
    }
    let fallback =
        crate::fallback::FallbackOverride::from_request(req.priority, req.fallback.as_ref())
            .map_err(|(field, message)| err(field, message))?;
    Ok(NewNotification {
        fallback,
        recipients,
        kind: req.kind,
        title: req.title,
        body: req.body,
        link,
        avatar_url,
        data: req.data.filter(|d| !d.is_null()),
        idempotency_key,
    })
}

pub fn validate_broadcast(req: &BroadcastRequest) -> Result<(), ValidationError> {
    validate_kind(&req.kind)?;
    validate_text("title", &req.title, MAX_TITLE_CHARS, true)?;
    validate_text("body", &req.body, MAX_BODY_CHARS, false)?;
    if let Some(l) = req.link.as_deref().filter(|l| !l.is_empty()) {
        validate_url("link", l)?;
    }
    validate_data(&req.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> PublishRequest {
        PublishRequest {
            recipient: Some("u1".into()),
            recipients: None,
            kind: "comment.created".into(),
            title: "Hi".into(),
            body: "b".into(),
            link: None,
            avatar_url: None,
            data: None,
            idempotency_key: None,
            priority: None,
            fallback: None,
        }
    }

    #[test]
    fn accepts_a_good_request_and_dedups_recipients() {
        let mut r = req();
        r.recipient = None;
        r.recipients = Some(vec!["b".into(), "a".into(), "b".into()]);
        let n = validate_publish(r).unwrap();
        assert_eq!(n.recipients, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn refuses_bad_fields() {
        type Case = (fn(&mut PublishRequest), &'static str);
        let cases: Vec<Case> = vec![
            (|r| r.kind = "has space".into(), "type"),
            (|r| r.kind = "".into(), "type"),
            (|r| r.title = "  ".into(), "title"),
            (|r| r.title = "x".repeat(201), "title"),
            (|r| r.body = "a\u{0}b".into(), "body"),
            (|r| r.link = Some("javascript:alert(1)".into()), "link"),
            (|r| r.link = Some("//evil.com/x".into()), "link"),
            (
                |r| r.avatar_url = Some("data:image/png;base64,xx".into()),
                "avatar_url",
            ),
            (|r| r.data = Some(serde_json::json!([1, 2])), "data"),
            (
                |r| r.data = Some(serde_json::json!({"x": "y".repeat(9000)})),
                "data",
            ),
            (|r| r.recipient = Some("bad id".into()), "recipients"),
            (
                |r| r.recipient = Some("'; DROP TABLE notifications;--".into()),
                "recipients",
            ),
            (|r| r.recipients = Some(vec!["a".into()]), "recipients"),
            (|r| r.idempotency_key = Some("".into()), "idempotency_key"),
        ];
        for (mutate, field) in cases {
            let mut r = req();
            mutate(&mut r);
            let e = validate_publish(r).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    /// Every case of the link rule's shared vectors (the web client's tests read the same file).
    #[test]
    fn link_rule_matches_the_shared_vectors() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../herald-protocol/link-vectors.json"
        );
        let text = std::fs::read_to_string(path).expect("read the link vectors");
        let v: serde_json::Value = serde_json::from_str(&text).expect("vectors are JSON");
        let cases = v["cases"].as_array().expect("cases");
        assert!(cases.len() > 30);
        for c in cases {
            let link = c["link"].as_str().expect("link");
            let ok = c["ok"].as_bool().expect("ok");
            assert_eq!(is_safe_link(link), ok, "{link:?}");
            let mut r = req();
            r.link = Some(link.to_string());
            match validate_publish(r) {
                Ok(_) => assert!(ok || link.is_empty(), "{link:?} accepted by publish"),
                Err(e) => {
                    assert!(!ok, "{link:?} refused by publish: {e}");
                    assert_eq!(e.field, "link");
                }
            }
        }
    }

    #[test]
    fn bidi_overrides_and_invisible_characters_are_refused_in_text() {
        for c in [
            '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200B}', '\u{2060}', '\u{FEFF}',
            '\u{061C}',
        ] {
            let mut r = req();
            r.title = format!("invoice{c}fdp.exe");
            assert_eq!(validate_publish(r).unwrap_err().field, "title", "{c:?}");
            let mut r = req();
            r.body = format!("a{c}b");
            assert_eq!(validate_publish(r).unwrap_err().field, "body", "{c:?}");
        }
        // Joiners and marks that real text needs stay allowed.
        for ok in [
            "👨\u{200D}👩\u{200D}👧",
            "می\u{200C}خواهم",
            "abc\u{200F}",
            "שלום\u{200E}",
        ] {
            let mut r = req();
            r.title = ok.into();
            assert!(validate_publish(r).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn too_many_recipients() {
        let mut r = req();
        r.recipient = None;
        r.recipients = Some((0..1001).map(|i| format!("u{i}")).collect());
        assert_eq!(validate_publish(r).unwrap_err().field, "recipients");
    }

    #[test]
    fn deep_data_refused() {
        let mut v = serde_json::json!({});
        for _ in 0..20 {
            v = serde_json::json!({ "a": v });
        }
        let mut r = req();
        r.data = Some(v);
        assert_eq!(validate_publish(r).unwrap_err().field, "data");
    }

    #[test]
    fn user_ids() {
        assert!(validate_user_id("alice@example.com").is_ok());
        assert!(validate_user_id("tenant:42|user-7").is_ok());
        assert!(validate_user_id("").is_err());
        assert!(validate_user_id(&"a".repeat(129)).is_err());
        assert!(validate_user_id("a/b").is_err());
        assert!(validate_user_id("ä").is_err());
    }
}
