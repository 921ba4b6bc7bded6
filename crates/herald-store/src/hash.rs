//! The idempotency request hash: what makes a retried publish "the same request".

use herald_core::NewNotification;
use sha2::{Digest, Sha256};

fn put_field(buf: &mut Vec<u8>, tag: &str, value: Option<&[u8]>) {
    buf.extend_from_slice(tag.as_bytes());
    match value {
        None => buf.push(0),
        Some(v) => {
            buf.push(1);
            buf.extend_from_slice(&(v.len() as u64).to_be_bytes());
            buf.extend_from_slice(v);
        }
    }
}

/// JSON with object keys sorted at every level, independent of serde_json's map order.
fn canonical_json(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(child) = map.get(*k) {
                    canonical_json(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// SHA-256 of a canonical, length-prefixed serialisation of everything but the key.
pub(crate) fn request_hash(recipients: &[String], n: &NewNotification) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"herald.publish.v1");
    buf.extend_from_slice(&(recipients.len() as u64).to_be_bytes());
    for r in recipients {
        put_field(&mut buf, "r", Some(r.as_bytes()));
    }
    put_field(&mut buf, "type", Some(n.kind.as_bytes()));
    put_field(&mut buf, "title", Some(n.title.as_bytes()));
    put_field(&mut buf, "body", Some(n.body.as_bytes()));
    put_field(&mut buf, "link", n.link.as_deref().map(str::as_bytes));
    put_field(
        &mut buf,
        "avatar_url",
        n.avatar_url.as_deref().map(str::as_bytes),
    );
    let data = n.data.as_ref().filter(|d| !d.is_null()).map(|d| {
        let mut s = String::new();
        canonical_json(d, &mut s);
        s
    });
    put_field(&mut buf, "data", data.as_deref().map(str::as_bytes));
    // Only when set, so the hash of a request without it is what it always was.
    if let Some(f) = n
        .fallback
        .as_ref()
        .and_then(|f| serde_json::to_string(f).ok())
    {
        put_field(&mut buf, "fallback", Some(f.as_bytes()));
    }
    Sha256::digest(&buf).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(data: serde_json::Value) -> NewNotification {
        NewNotification {
            recipients: vec!["a".into(), "b".into()],
            kind: "k".into(),
            title: "t".into(),
            body: "b".into(),
            link: None,
            avatar_url: None,
            data: Some(data),
            idempotency_key: Some("key".into()),
            fallback: None,
        }
    }

    #[test]
    fn request_hash_is_canonical() {
        let a = n(serde_json::json!({"x": 1, "y": {"b": [1, 2], "a": null}}));
        let b = n(serde_json::json!({"y": {"a": null, "b": [1, 2]}, "x": 1}));
        assert_eq!(
            request_hash(&a.recipients, &a),
            request_hash(&b.recipients, &b)
        );
        let mut c = a.clone();
        c.idempotency_key = Some("other".into());
        assert_eq!(
            request_hash(&a.recipients, &a),
            request_hash(&c.recipients, &c)
        );
        let mut d = a.clone();
        d.title = "t2".into();
        assert_ne!(
            request_hash(&a.recipients, &a),
            request_hash(&d.recipients, &d)
        );
        // Field boundaries are unambiguous.
        let mut e = a.clone();
        e.title = "tb".into();
        e.body = "".into();
        let mut f = a.clone();
        f.title = "t".into();
        f.body = "bb".into();
        assert_ne!(
            request_hash(&e.recipients, &e),
            request_hash(&f.recipients, &f)
        );
    }
}
