//! Email templates: per notification type an HTML and a plain-text template of one
//! notification, in a small safe syntax. Text is copied as is; `{{name}}` is replaced by a
//! value of the notification: [`PLACEHOLDERS`]. In the HTML part every substituted value is
//! HTML-escaped, so a title such as `<script>` arrives as text. An unknown placeholder, or a
//! `{{` without its `}}`, is refused when the template is parsed (at start).

use std::collections::BTreeMap;

/// The names a template may use.
pub const PLACEHOLDERS: &[&str] = &["title", "body", "link", "type", "created_at"];
/// The largest template accepted.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Title,
    Body,
    Link,
    Type,
    CreatedAt,
}

impl Var {
    fn parse(name: &str) -> Option<Var> {
        Some(match name {
            "title" => Var::Title,
            "body" => Var::Body,
            "link" => Var::Link,
            "type" => Var::Type,
            "created_at" => Var::CreatedAt,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values of one notification, as a template sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    pub title: &'a str,
    pub body: &'a str,
    /// The notification's link, else the server's public URL.
    pub link: &'a str,
    pub kind: &'a str,
    /// RFC 3339, UTC.
    pub created_at: &'a str,
}

/// Which part a template renders: values are HTML-escaped in `Html`, copied in `Text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    Html,
    Text,
}

impl Template {
    /// Parses `src`; the error says what is wrong and where.
    pub fn parse(src: &str) -> Result<Template, String> {
        if src.len() > MAX_TEMPLATE_BYTES {
            return Err(format!("longer than {MAX_TEMPLATE_BYTES} bytes"));
        }
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "a {{{{ at byte {} has no closing }}}}",
                    src.len() - rest.len() + open
                )
            })?;
            let name = after[..close].trim();
            let var = Var::parse(name).ok_or_else(|| {
                format!(
                    "unknown placeholder {{{{{name}}}}} (known: {})",
                    PLACEHOLDERS.join(", ")
                )
            })?;
            parts.push(Part::Var(var));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    pub fn render(&self, item: &Item<'_>, escape: Escape) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => {
                    let value = match v {
                        Var::Title => item.title,
                        Var::Body => item.body,
                        Var::Link => item.link,
                        Var::Type => item.kind,
                        Var::CreatedAt => item.created_at,
                    };
                    match escape {
                        Escape::Html => out.push_str(&escape_html(value)),
                        Escape::Text => out.push_str(value),
                    }
                }
            }
        }
        out
    }
}

/// `&`, `<`, `>`, `"` and `'` as character references: safe in element content and in quoted
/// attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML and the text template of one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplatePair {
    pub html: Template,
    pub text: Template,
}

/// The built-in item templates.
pub const DEFAULT_HTML: &str = "<div style=\"margin:0 0 16px 0\">\n\
  <p style=\"margin:0;font-weight:bold\"><a href=\"{{link}}\">{{title}}</a></p>\n\
  <p style=\"margin:4px 0 0 0\">{{body}}</p>\n\
</div>\n";
pub const DEFAULT_TEXT: &str = "* {{title}}\n  {{body}}\n  {{link}}\n";

/// The templates by type, with the default for every other type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    pub by_type: BTreeMap<String, TemplatePair>,
    pub default: TemplatePair,
}

impl Templates {
    /// The built-in default only.
    pub fn builtin() -> Templates {
        Templates {
            by_type: BTreeMap::new(),
            default: TemplatePair {
                // The built-in templates use only known placeholders (a unit test parses them).
                html: Template::parse(DEFAULT_HTML).unwrap_or(Template { parts: Vec::new() }),
                text: Template::parse(DEFAULT_TEXT).unwrap_or(Template { parts: Vec::new() }),
            },
        }
    }

    pub fn for_kind(&self, kind: &str) -> &TemplatePair {
        self.by_type.get(kind).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item<'a>(title: &'a str, body: &'a str) -> Item<'a> {
        Item {
            title,
            body,
            link: "https://app.example/n/1?a=1&b=2",
            kind: "comment",
            created_at: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn builtin_templates_parse() {
        assert!(Template::parse(DEFAULT_HTML).is_ok());
        assert!(Template::parse(DEFAULT_TEXT).is_ok());
        assert!(!Templates::builtin().default.html.parts.is_empty());
    }

    #[test]
    fn values_are_escaped_in_html_only() {
        let t = Template::parse("<b>{{ title }}</b> <a href=\"{{link}}\">{{body}}</a>").unwrap();
        let i = item("<script>alert('x')</script>", "a & b \"q\"");
        assert_eq!(
            t.render(&i, Escape::Html),
            "<b>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</b> <a href=\"https://app.example/n/1?a=1&amp;b=2\">a &amp; b &quot;q&quot;</a>"
        );
        assert_eq!(
            t.render(&i, Escape::Text),
            "<b><script>alert('x')</script></b> <a href=\"https://app.example/n/1?a=1&b=2\">a & b \"q\"</a>"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        for (bad, want) in [
            ("{{titel}}", "unknown placeholder {{titel}}"),
            ("x {{title", "no closing"),
            ("{{}}", "unknown placeholder"),
            ("{{user_id}}", "known: title"),
        ] {
            let e = Template::parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert!(Template::parse(&"x".repeat(MAX_TEMPLATE_BYTES + 1)).is_err());
    }

    proptest! {
        /// Whatever the values, the HTML rendering of a value never contains markup
        /// characters: the only `<`, `>`, `"`, `'` are the template's own.
        #[test]
        fn html_values_never_carry_markup(title in ".{0,40}", body in ".{0,40}") {
            let t = Template::parse("{{title}}|{{body}}").unwrap();
            let out = t.render(&item(&title, &body), Escape::Html);
            prop_assert!(!out.contains(['<', '>', '"', '\'']));
            let e = escape_html(&title);
            prop_assert!(out.starts_with(&e));
        }
    }
}
