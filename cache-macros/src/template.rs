//! The key-template language, parsed without `syn` so that it can be tested
//! (and fuzzed) on its own.
//!
//! A template is literal text with placeholders: `user:{id}`,
//! `hero:{q.lang}:{q.id}`, `pair:{self.0}`. `{{` and `}}` are literal braces.
//! A placeholder is a path: an identifier (a parameter, a field, or `self`)
//! followed by `.field` or `.0` segments. Whitespace inside braces is
//! allowed around the path, nothing else is (no format specs).

use std::fmt;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Literal text (braces already unescaped).
    Literal(String),
    /// A placeholder: its path segments, e.g. `["q", "lang"]`.
    Placeholder(Vec<String>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) segments: Vec<Segment>,
}

/// Why a template does not parse, with the byte range of the culprit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub(crate) message: String,
    pub(crate) at: std::ops::Range<usize>,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
        && s != "_"
}

fn is_index(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

impl Template {
    /// Parses a template.
    pub(crate) fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let bytes = source.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    literal.push('{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    literal.push('}');
                    i += 2;
                }
                b'}' => {
                    return Err(TemplateError {
                        message: "unmatched `}` in key template; write `}}` for a literal brace"
                            .into(),
                        at: i..i + 1,
                    });
                }
                b'{' => {
                    let Some(len) = source[i + 1..].find('}') else {
                        return Err(TemplateError {
                            message: "unclosed `{` in key template; write `{{` for a literal brace"
                                .into(),
                            at: i..source.len(),
                        });
                    };
                    let inner = &source[i + 1..i + 1 + len];
                    let at = i..i + len + 2;
                    if let Some(pos) = inner.find('{') {
                        return Err(TemplateError {
                            message: "`{` inside a placeholder; write `{{` for a literal brace"
                                .into(),
                            at: i + 1 + pos..i + 2 + pos,
                        });
                    }
                    let path = Self::parse_path(inner.trim())
                        .map_err(|message| TemplateError { message, at })?;
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Placeholder(path));
                    i += len + 2;
                }
                _ => {
                    let c = source[i..].chars().next().expect("in bounds");
                    literal.push(c);
                    i += c.len_utf8();
                }
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments })
    }

    fn parse_path(inner: &str) -> Result<Vec<String>, String> {
        if inner.is_empty() {
            return Err("empty placeholder `{}`: name a parameter, e.g. `{id}`".into());
        }
        if let Some(pos) = inner.find([':', '!', '?']) {
            return Err(format!(
                "`{{{inner}}}`: format specifications are not supported in key templates (found `{}`)",
                &inner[pos..=pos]
            ));
        }
        let parts: Vec<&str> = inner.split('.').map(str::trim).collect();
        for (n, part) in parts.iter().enumerate() {
            let ok = if n == 0 {
                is_ident(part)
            } else {
                is_ident(part) || is_index(part)
            };
            if !ok {
                return Err(format!(
                    "`{{{inner}}}` is not a placeholder: expected a parameter name or a field path such as `{{user.id}}`"
                ));
            }
        }
        Ok(parts.into_iter().map(str::to_owned).collect())
    }

    /// The placeholders, in order.
    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &[String]> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Placeholder(p) => Some(p.as_slice()),
            Segment::Literal(_) => None,
        })
    }

    /// The literal text, concatenated.
    pub(crate) fn literals(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Literal(l) => Some(l.as_str()),
            Segment::Placeholder(_) => None,
        })
    }

    /// Writes the template back, braces escaped: `parse(t.to_string()) == t`.
    #[allow(dead_code)] // used by the tests and the fuzz target
    pub(crate) fn to_source(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(l) => out.push_str(&l.replace('{', "{{").replace('}', "}}")),
                Segment::Placeholder(p) => {
                    out.push('{');
                    out.push_str(&p.join("."));
                    out.push('}');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholder(p: &[&str]) -> Segment {
        Segment::Placeholder(p.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn parses_placeholders_and_escapes() {
        let t = Template::parse("user:{id}:{ q.lang }:{{x}}").unwrap();
        assert_eq!(
            t.segments,
            vec![
                Segment::Literal("user:".into()),
                placeholder(&["id"]),
                Segment::Literal(":".into()),
                placeholder(&["q", "lang"]),
                Segment::Literal(":{x}".into()),
            ]
        );
        assert_eq!(
            Template::parse("{self.0}").unwrap().segments,
            vec![placeholder(&["self", "0"])]
        );
        assert_eq!(Template::parse("").unwrap().segments, vec![]);
        assert_eq!(Template::parse("héllo:{ïd}").unwrap().segments.len(), 2);
    }

    #[test]
    fn reports_errors_with_positions() {
        let e = Template::parse("user:{id").unwrap_err();
        assert!(e.message.contains("unclosed"));
        assert_eq!(e.at.start, 5);
        assert!(
            Template::parse("a}b")
                .unwrap_err()
                .message
                .contains("unmatched")
        );
        assert!(Template::parse("{}").unwrap_err().message.contains("empty"));
        assert!(
            Template::parse("{id:?}")
                .unwrap_err()
                .message
                .contains("format")
        );
        assert!(Template::parse("{1x}").is_err());
        assert!(Template::parse("{a..b}").is_err());
        assert!(Template::parse("{a.01}").is_err());
        assert!(Template::parse("{a{b}").is_err());
        assert!(Template::parse("{_}").is_err());
    }

    #[test]
    fn round_trips() {
        for source in ["user:{id}", "{{literal}}:{a.b.0}", "x", "{a}{b}", "}}{{"] {
            let t = Template::parse(source).unwrap();
            assert_eq!(Template::parse(&t.to_source()).unwrap(), t, "{source}");
        }
    }
}
