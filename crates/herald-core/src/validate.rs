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

fn validate_kind(kind: &str) -> Result<(), ValidationError> {
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
    Ok(())
}

/// Links and avatars are `https://`/`http://` URLs or site-relative paths (`/…`), so a
/// `javascript:` URL can never reach a client's `href`.
fn validate_url(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.len() > MAX_URL_LEN {
        return Err(err(field, format!("must be at most {MAX_URL_LEN} bytes")));
    }
    let lower = value.to_ascii_lowercase();
    let absolute = (lower.starts_with("https://") || lower.starts_with("http://"))
        && value
            .split("://")
            .nth(1)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    let relative = value.starts_with('/') && !value.starts_with("//");
    if !(absolute || relative) {
        return Err(err(
            field,
            "must be an http(s) URL or a path starting with a single /",
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(
            field,
            "must not contain whitespace or control characters",
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
    Ok(NewNotification {
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
