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

/// An identifier as Rust (and so `proc_macro2::Ident::new`) defines it:
/// XID_Start or `_`, then XID_Continue; `_` alone is not one.
fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || unicode_ident::is_xid_start(c))
        && chars.all(unicode_ident::is_xid_continue)
        && s != "_"
}

/// A tuple index: a `u32` without leading zeros (`syn::Index` holds a `u32`).
fn is_index(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.parse::<u32>().is_ok()
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

    /// Two placeholders with no `:` between them (`{a}{b}`, `{a}-{b}`),
    /// if any. Rendered values never hold an unescaped `:`, so a `:` between
    /// two placeholders is what keeps rendering injective: `("ab", "")` and
    /// `("a", "b")` both render `ab` in `{a}{b}`.
    pub(crate) fn unseparated_placeholders(&self) -> Option<(String, String)> {
        let mut previous: Option<&[String]> = None;
        let mut separated = true;
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => separated |= text.contains(':'),
                Segment::Placeholder(path) => {
                    if let (Some(prev), false) = (previous, separated) {
                        return Some((prev.join("."), path.join(".")));
                    }
                    previous = Some(path);
                    separated = false;
                }
            }
        }
        None
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

    /// Found by the fuzz target: the macros turn each segment into an
    /// `Ident` or a `u32` tuple index, and panicked on anything else.
    #[test]
    fn segments_are_identifiers_or_u32_indexes() {
        assert!(Template::parse("{q.444444444544444}").is_err());
        assert!(Template::parse("{q.4294967296}").is_err());
        assert!(Template::parse("{q.4294967295}").is_ok());
        // Alphanumeric for `char`, but not XID_Continue: `²`, `½`.
        assert!(Template::parse("{a²}").is_err());
        assert!(Template::parse("{a.b½}").is_err());
        // XID_Start that `char::is_alphabetic` also accepts, and the reverse:
        // U+0345 is alphabetic but not XID_Start.
        assert!(Template::parse("{ïd}").is_ok());
        assert!(Template::parse("{\u{345}x}").is_err());
        assert!(Template::parse("{\u{345}}").is_err());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Text biased towards what templates are made of.
        fn template_like() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("{".to_owned()),
                Just("}".to_owned()),
                Just("{{".to_owned()),
                Just("}}".to_owned()),
                Just(".".to_owned()),
                Just(" ".to_owned()),
                Just(":".to_owned()),
                Just("_".to_owned()),
                Just("0".to_owned()),
                Just("self".to_owned()),
                "[a-z]{1,4}",
                "[0-9]{1,12}",
                any::<char>().prop_map(String::from),
            ];
            prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
        }

        fn check(source: &str) -> Result<(), TestCaseError> {
            match Template::parse(source) {
                Ok(t) => {
                    let again = Template::parse(&t.to_source());
                    prop_assert_eq!(again.as_ref(), Ok(&t), "round trip of {:?}", source);
                    for path in t.placeholders() {
                        for (n, part) in path.iter().enumerate() {
                            if n > 0 && is_index(part) {
                                continue;
                            }
                            // What the macros do with it: must not panic.
                            let _ = proc_macro2::Ident::new(part, proc_macro2::Span::call_site());
                        }
                    }
                }
                Err(e) => {
                    prop_assert!(e.at.start <= e.at.end && e.at.end <= source.len());
                    prop_assert!(source.is_char_boundary(e.at.start));
                    prop_assert!(source.is_char_boundary(e.at.end));
                    prop_assert!(!e.message.is_empty());
                }
            }
            Ok(())
        }

        fn ident() -> impl Strategy<Value = String> {
            "[a-zA-Z_\u{e0}-\u{ff}\u{3b1}-\u{3c9}][a-zA-Z0-9_\u{e0}-\u{ff}]{0,8}"
                .prop_filter("`_` alone is no identifier", |s| s != "_")
                .prop_filter("XID", |s| is_ident(s))
        }

        fn segment() -> impl Strategy<Value = Segment> {
            let path = (
                ident(),
                prop::collection::vec(
                    prop_oneof![ident(), (0u32..=u32::MAX).prop_map(|n| n.to_string())],
                    0..4,
                ),
            )
                .prop_map(|(first, rest)| {
                    let mut path = vec![first];
                    path.extend(rest);
                    Segment::Placeholder(path)
                });
            prop_oneof![
                any::<String>()
                    .prop_filter("non-empty", |s| !s.is_empty())
                    .prop_map(Segment::Literal),
                path,
            ]
        }

        /// Valid templates: segments with adjacent literals merged, as the
        /// parser produces them.
        fn template() -> impl Strategy<Value = Template> {
            prop::collection::vec(segment(), 0..8).prop_map(|segments| {
                let mut merged: Vec<Segment> = Vec::new();
                for s in segments {
                    match (merged.last_mut(), s) {
                        (Some(Segment::Literal(l)), Segment::Literal(more)) => l.push_str(&more),
                        (_, s) => merged.push(s),
                    }
                }
                Template { segments: merged }
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            #[test]
            fn never_panics_on_any_text(source in any::<String>()) {
                check(&source)?;
            }

            #[test]
            fn never_panics_on_template_like_text(source in template_like()) {
                check(&source)?;
            }

            #[test]
            fn valid_templates_round_trip(t in template()) {
                let source = t.to_source();
                prop_assert_eq!(Template::parse(&source), Ok(t.clone()), "{:?}", source);
                // Whitespace around path segments is allowed and dropped.
                let spaced: String = t
                    .segments
                    .iter()
                    .map(|s| match s {
                        Segment::Literal(l) => l.replace('{', "{{").replace('}', "}}"),
                        Segment::Placeholder(p) => format!("{{ {} }}", p.join(" . ")),
                    })
                    .collect();
                prop_assert_eq!(Template::parse(&spaced), Ok(t), "{:?}", spaced);
            }
        }
    }

    #[test]
    fn placeholders_must_be_separated() {
        let check = |t: &str| Template::parse(t).unwrap().unseparated_placeholders();
        assert_eq!(check("{a}{b}"), Some(("a".into(), "b".into())));
        assert_eq!(check("x:{a}-{b.c}"), Some(("a".into(), "b.c".into())));
        assert_eq!(check("{a}:{b}"), None);
        assert_eq!(check("{a}-x:y-{b}"), None);
        assert_eq!(check("user{id}suffix"), None);
        assert_eq!(check("{a}"), None);
    }

    #[test]
    fn round_trips() {
        for source in ["user:{id}", "{{literal}}:{a.b.0}", "x", "{a}{b}", "}}{{"] {
            let t = Template::parse(source).unwrap();
            assert_eq!(Template::parse(&t.to_source()).unwrap(), t, "{source}");
        }
    }
}
