//! The email channel: one MIME message (plain text + HTML) per digest, sent over SMTP with
//! lettre (rustls, pooled connections).
//!
//! * `Message-ID` is `<nf_…_email@host>`, the stable key of the first (lowest-key) covered
//!   notification, so a repeated send of the same digest has the same id; `X-Herald-Keys`
//!   lists every covered key.
//! * `List-Unsubscribe` (RFC 2369) with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
//!   (RFC 8058): a link with a signed token ([`super::unsubscribe`]).
//! * The body comes from the type's templates (`herald_core::fallback::template`): English,
//!   one section per notification.
//! * A 5xx answer is permanent (the address bounced), anything else (4xx, connection,
//!   timeout) is transient: [`SmtpFailure`].

use std::sync::Arc;
use std::time::Duration;

use herald_core::fallback::template::{escape_html, Escape, Item, Templates};
use herald_protocol::Notification;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretSlice, SecretString};

/// `HERALD_SMTP_*`, `HERALD_EMAIL_*`.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// `smtp://[user:pass@]host:port[?tls=required|opportunistic]` or `smtps://…`: a secret
    /// (it may hold the credentials).
    pub smtp_url: SecretString,
    /// Per SMTP command.
    pub timeout: Duration,
    pub from: Mailbox,
    /// The right-hand side of every `Message-ID`: the `From` address's domain.
    pub message_id_host: String,
    /// `HERALD_PUBLIC_URL`: the base of the unsubscribe link, and the link of a notification
    /// that has none. No trailing slash.
    pub public_url: String,
    /// `HERALD_EMAIL_LINK_BASE`: the application's URL, against which a notification's
    /// relative `link` (`/posts/1`) is made absolute (a mail client has no page to resolve it
    /// against). Defaults to `public_url`. No trailing slash.
    pub link_base: String,
    /// `HERALD_EMAIL_UNSUBSCRIBE_SECRET`: the HMAC key of unsubscribe tokens.
    pub unsubscribe_key: Arc<SecretSlice<u8>>,
    /// The digest window when the user set none (`digest_window_secs`).
    pub digest_window: Duration,
    pub templates: Arc<Templates>,
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpFailure {
    /// The server refused the recipient for good (550/551/553 with no enhanced code, or a
    /// mailbox one, 5.1.x/5.2.x): the address goes on the suppression list.
    Permanent(String),
    /// The server refused this message for good for another reason (a sender or content
    /// policy, a size limit, a malformed address): dead-lettered, the address not suppressed.
    Rejected(String),
    /// Try again later (4xx, connection, timeout, and authentication refusals: a wrong SMTP
    /// password is the operator's to fix, not the recipient's fault).
    Transient(String),
}

/// How a 5xx reply is judged: `code` the three digits, `text` what followed them.
pub fn classify_permanent(code: &str, text: &str) -> fn(String) -> SmtpFailure {
    // 530 auth required, 534 mechanism too weak, 535 credentials refused, 538 encryption
    // required for the mechanism: the relay's configuration, retried.
    if matches!(code, "530" | "534" | "535" | "538") {
        return SmtpFailure::Transient;
    }
    let enhanced = text
        .split_whitespace()
        .next()
        .filter(|t| t.len() >= 5 && t.starts_with("5.") && t[2..].contains('.'));
    let mailbox = match enhanced {
        None => true,
        Some(e) => e.starts_with("5.1.") || e.starts_with("5.2."),
    };
    if matches!(code, "550" | "551" | "553") && mailbox {
        SmtpFailure::Permanent
    } else {
        SmtpFailure::Rejected
    }
}

pub type Mailer = AsyncSmtpTransport<Tokio1Executor>;

/// The transport of `cfg` (needs a Tokio runtime: the pool runs a task).
pub fn mailer(cfg: &EmailConfig) -> Result<Mailer, String> {
    Ok(Mailer::from_url(cfg.smtp_url.expose_secret())
        .map_err(|e| e.to_string())?
        .timeout(Some(cfg.timeout))
        .build())
}

/// Checks an SMTP URL the way [`mailer`] will read it.
pub fn check_smtp_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "smtp" | "smtps") {
        return Err("must be an smtp:// or smtps:// URL".to_owned());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    for (k, v) in parsed.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("tls", "required" | "opportunistic" | "wrapper") if parsed.scheme() == "smtp" => {}
            ("tls", _) => {
                return Err(
                    "tls= must be required or opportunistic (STARTTLS), and only with smtp://"
                        .to_owned(),
                )
            }
            ("ehlo_domain", _) => {}
            (k, _) => return Err(format!("unknown parameter {k:?} (tls, ehlo_domain)")),
        }
    }
    // A password only over TLS that cannot be stripped: smtps://, or STARTTLS required
    // (opportunistic STARTTLS falls back to plain text when a middlebox removes it). A relay
    // on this machine is the exception.
    let tls = parsed.scheme() == "smtps"
        || parsed
            .query_pairs()
            .any(|(k, v)| k == "tls" && (v == "required" || v == "wrapper"));
    let loopback = match parsed.host() {
        // smtp:// is not a "special" URL scheme: its IPv4 hosts parse as domains.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
        }
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    if parsed.password().is_some() && !tls && !loopback {
        return Err(
            "a password needs TLS: use smtps:// or ?tls=required (STARTTLS), or a relay on loopback"
                .to_owned(),
        );
    }
    Mailer::from_url(url).map(|_| ()).map_err(|e| e.to_string())
}

/// The email of one digest, ready to send.
pub struct Email {
    pub to: String,
    pub message_id: String,
    pub keys: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub unsubscribe_url: String,
}

/// Strips what must not reach a header (controls, line breaks), and caps the length.
fn header_text(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.chars().count() <= max {
        clean.to_owned()
    } else {
        let mut out: String = clean.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Composes the digest of `items` (at least one; each with its stable key) for `to`.
pub fn compose(
    cfg: &EmailConfig,
    to: &str,
    items: &[(&Notification, String)],
    unsubscribe_url: String,
) -> Email {
    let mut keys: Vec<String> = items.iter().map(|(_, k)| k.clone()).collect();
    keys.sort();
    let first = keys.first().cloned().unwrap_or_default();
    let subject = match items {
        [(n, _)] => header_text(&n.title, 200),
        _ => format!("{} unread notifications", items.len()),
    };
    let (mut text, mut html) = (String::new(), String::new());
    let intro = match items.len() {
        1 => "You have an unread notification:".to_owned(),
        n => format!("You have {n} unread notifications:"),
    };
    text.push_str(&intro);
    text.push_str("\n\n");
    html.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n<p>");
    html.push_str(&escape_html(&intro));
    html.push_str("</p>\n");
    for (n, _) in items {
        let created = n
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let link = match n.link.as_deref() {
            Some(l) if l.starts_with('/') => format!("{}{l}", cfg.link_base),
            Some(l) => l.to_owned(),
            None => cfg.public_url.clone(),
        };
        let item = Item {
            title: &n.title,
            body: &n.body,
            link: &link,
            kind: &n.kind,
            created_at: &created,
        };
        let t = cfg.templates.for_kind(&n.kind);
        text.push_str(&t.text.render(&item, Escape::Text));
        text.push('\n');
        html.push_str(&t.html.render(&item, Escape::Html));
    }
    text.push_str(&format!(
        "--\nYou get this email because these notifications were not seen in the app.\nUnsubscribe: {unsubscribe_url}\n"
    ));
    html.push_str(&format!(
        "<hr>\n<p style=\"font-size:small;color:#666\">You get this email because these notifications were not seen in the app. <a href=\"{}\">Unsubscribe</a></p>\n</body></html>\n",
        escape_html(&unsubscribe_url)
    ));
    Email {
        to: to.to_owned(),
        message_id: format!("<{first}@{}>", cfg.message_id_host),
        keys,
        subject,
        text,
        html,
        unsubscribe_url,
    }
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// The MIME message of `email`.
pub fn message(cfg: &EmailConfig, email: &Email) -> Result<Message, String> {
    let to: Mailbox = email
        .to
        .parse()
        .map_err(|e| format!("the address on file is not usable: {e}"))?;
    Message::builder()
        .from(cfg.from.clone())
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(email.message_id.clone()))
        .raw_header(header(
            "List-Unsubscribe",
            format!("<{}>", email.unsubscribe_url),
        ))
        .raw_header(header(
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".to_owned(),
        ))
        .raw_header(header("X-Herald-Keys", email.keys.join(", ")))
        .raw_header(header("Auto-Submitted", "auto-generated".to_owned()))
        .multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            email.html.clone(),
        ))
        .map_err(|e| format!("building the message: {e}"))
}

/// Sends one message.
pub async fn send(mailer: &Mailer, msg: Message) -> Result<(), SmtpFailure> {
    match mailer.send(msg).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => {
            let code = e.status().map(|c| c.to_string()).unwrap_or_default();
            let text = e.to_string();
            // lettre's text is "permanent error (550): 5.1.1 …"; the enhanced code follows ':'.
            let after = text.split_once("): ").map_or("", |(_, t)| t);
            Err(classify_permanent(&code, after)(format!("SMTP {e}")))
        }
        Err(e) => Err(SmtpFailure::Transient(format!("SMTP {e}"))),
    }
}

/// `<type>.html` / `<type>.txt` (and `default.html` / `default.txt`, replacing the built-in
/// default) from `dir`: each pair complete, every placeholder known. Errors name the file.
pub fn load_templates(dir: &std::path::Path) -> Result<Templates, String> {
    use herald_core::fallback::template::{Template, TemplatePair};
    use std::collections::BTreeMap;
    const MAX_FILES: usize = 512;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: BTreeMap<String, (Option<Template>, Option<Template>)> = BTreeMap::new();
    for (i, entry) in entries.enumerate() {
        if i >= MAX_FILES {
            return Err(format!("more than {MAX_FILES} files in {}", dir.display()));
        }
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let (kind, html) = match (name.strip_suffix(".html"), name.strip_suffix(".txt")) {
            (Some(k), _) => (k.to_owned(), true),
            (_, Some(k)) => (k.to_owned(), false),
            _ => continue,
        };
        if kind.is_empty() || kind.len() > 64 {
            return Err(format!("{name}: the type must be 1 to 64 characters"));
        }
        let meta = std::fs::metadata(&path).map_err(|e| format!("{name}: {e}"))?;
        if meta.len() > herald_core::fallback::template::MAX_TEMPLATE_BYTES as u64 {
            return Err(format!("{name}: longer than 64 KiB"));
        }
        let src = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        let t = Template::parse(&src).map_err(|e| format!("{name}: {e}"))?;
        let slot = files.entry(kind).or_default();
        if html {
            slot.0 = Some(t);
        } else {
            slot.1 = Some(t);
        }
    }
    let mut out = Templates::builtin();
    for (kind, pair) in files {
        let (Some(html), Some(text)) = pair else {
            return Err(format!(
                "{kind}: both {kind}.html and {kind}.txt are needed"
            ));
        };
        let pair = TemplatePair { html, text };
        if kind == "default" {
            out.default = pair;
        } else {
            out.by_type.insert(kind, pair);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_a_recipient_refusal_suppresses_the_address() {
        let kind = |code: &str, text: &str| match classify_permanent(code, text)(String::new()) {
            SmtpFailure::Permanent(_) => "suppress",
            SmtpFailure::Rejected(_) => "dead",
            SmtpFailure::Transient(_) => "retry",
        };
        assert_eq!(kind("550", "5.1.1 mailbox unavailable"), "suppress");
        assert_eq!(kind("550", "mailbox unavailable"), "suppress");
        assert_eq!(kind("553", "5.1.3 bad address syntax"), "suppress");
        assert_eq!(kind("551", "5.2.1 mailbox disabled"), "suppress");
        // A sender or content policy is not the recipient's fault.
        assert_eq!(kind("550", "5.7.1 relaying denied"), "dead");
        assert_eq!(kind("554", "5.6.0 message refused"), "dead");
        assert_eq!(kind("552", "5.3.4 message too big"), "dead");
        // Authentication: the relay's configuration, retried.
        assert_eq!(kind("535", "5.7.8 credentials invalid"), "retry");
        assert_eq!(kind("530", "5.7.0 authentication required"), "retry");
    }

    use super::*;

    fn cfg() -> EmailConfig {
        EmailConfig {
            smtp_url: SecretString::from("smtp://127.0.0.1:2525"),
            timeout: Duration::from_secs(5),
            from: "Herald <no-reply@example.com>".parse().unwrap(),
            message_id_host: "example.com".into(),
            public_url: "https://herald.example".into(),
            link_base: "https://app.example".into(),
            unsubscribe_key: Arc::new(SecretSlice::from(vec![7u8; 32])),
            digest_window: Duration::from_secs(60),
            templates: Arc::new(Templates::builtin()),
        }
    }

    fn notification(title: &str) -> Notification {
        serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::nil(), "user_id": "u", "seq": 1, "type": "comment",
            "title": title, "body": "b", "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_digest_has_both_parts_the_stable_id_and_escaped_values() {
        let n1 = notification("<script>x</script>");
        let n2 = notification("second");
        let e = compose(
            &cfg(),
            "ana@example.com",
            &[(&n1, "nf_b_email".into()), (&n2, "nf_a_email".into())],
            "https://herald.example/v1/email/unsubscribe?t=t".into(),
        );
        assert_eq!(e.message_id, "<nf_a_email@example.com>");
        assert_eq!(e.subject, "2 unread notifications");
        assert!(e.html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!e.html.contains("<script>"));
        assert!(e.text.contains("<script>x</script>"));
        let msg = message(&cfg(), &e).unwrap();
        let raw = String::from_utf8(msg.formatted()).unwrap();
        assert!(
            raw.contains("Message-ID: <nf_a_email@example.com>"),
            "{raw}"
        );
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(raw.contains("multipart/alternative"));
    }

    #[test]
    fn relative_links_point_at_the_application() {
        let mut rel = notification("rel");
        rel.link = Some("/posts/1?x=1".into());
        let mut abs = notification("abs");
        abs.link = Some("https://elsewhere.example/p".into());
        let none = notification("none");
        let e = compose(
            &cfg(),
            "ana@example.com",
            &[(&rel, "a".into()), (&abs, "b".into()), (&none, "c".into())],
            "u".into(),
        );
        assert!(
            e.html.contains("href=\"https://app.example/posts/1?x=1\""),
            "{}",
            e.html
        );
        assert!(e.text.contains("https://app.example/posts/1?x=1"));
        assert!(e.html.contains("href=\"https://elsewhere.example/p\""));
        assert!(
            e.html.contains("href=\"https://herald.example\""),
            "{}",
            e.html
        );
    }

    #[test]
    fn subjects_are_header_safe() {
        let n = notification("a\r\nBcc: evil@example.com");
        let e = compose(&cfg(), "ana@example.com", &[(&n, "k".into())], "u".into());
        assert!(!e.subject.contains(['\r', '\n']));
    }

    #[test]
    fn smtp_urls_are_checked() {
        assert!(check_smtp_url("smtp://127.0.0.1:2525").is_ok());
        assert!(check_smtp_url("smtp://u:p@mail.example:587?tls=required").is_ok());
        assert!(check_smtp_url("smtps://mail.example:465").is_ok());
        assert!(check_smtp_url("smtps://u:p@mail.example:465").is_ok());
        assert!(check_smtp_url("smtp://u:p@127.0.0.1:2525").is_ok());
        // A password over plain text, or over STARTTLS a middlebox can strip: refused.
        for bad in [
            "smtp://u:p@mail.example:587",
            "smtp://u:p@mail.example:587?tls=opportunistic",
        ] {
            let e = check_smtp_url(bad).unwrap_err();
            assert!(e.contains("needs TLS"), "{bad}: {e}");
            assert!(
                !e.contains("u:p"),
                "the error never repeats the password: {e}"
            );
        }
        for bad in [
            "http://mail.example",
            "smtp://",
            "smtp://mail.example?tls=maybe",
            "smtps://mail.example?tls=required",
            "smtp://mail.example?foo=1",
        ] {
            assert!(check_smtp_url(bad).is_err(), "{bad}");
        }
    }
}
