//! Parsing of the attributes' arguments: `#[cached(...)]`,
//! `#[invalidate(...)]` and `#[cache_key(...)]`.
//!
//! Arguments are parsed loosely first (`name = value`, or a positional
//! string), then interpreted one by one, so that every problem is reported
//! in one compile, each at its own token.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprArray, ExprLit, Ident, Lit, LitStr, Token};

use crate::errors::Errors;
use crate::template::Template;

/// One argument as written.
pub(crate) enum RawArg {
    /// `name = value`
    Named { name: Ident, value: Expr },
    /// A bare value (the key templates of `#[invalidate("user:{id}")]`).
    Positional(Expr),
}

impl Parse for RawArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if (input.peek(Ident::peek_any)) && input.peek2(Token![=]) {
            let name = Ident::parse_any(input)?;
            input.parse::<Token![=]>()?;
            let value = input.parse()?;
            Ok(RawArg::Named { name, value })
        } else {
            Ok(RawArg::Positional(input.parse()?))
        }
    }
}

/// Parses the comma-separated arguments of an attribute.
pub(crate) fn parse_args(tokens: proc_macro2::TokenStream) -> syn::Result<Vec<RawArg>> {
    let args =
        syn::parse::Parser::parse2(Punctuated::<RawArg, Token![,]>::parse_terminated, tokens)?;
    Ok(args.into_iter().collect())
}

/// A key template and the literal it came from.
#[derive(Clone)]
pub(crate) struct TemplateLit {
    pub(crate) lit: LitStr,
    pub(crate) template: Template,
}

/// The codec of `#[cached(codec = "...")]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CodecArg {
    #[default]
    Json,
    MsgPack,
}

/// The options of `#[cached]`.
pub(crate) struct CachedArgs {
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) key: Option<TemplateLit>,
    pub(crate) namespace: Option<LitStr>,
    pub(crate) cache_none: bool,
    pub(crate) tags: Vec<TemplateLit>,
    pub(crate) lock: bool,
    pub(crate) lock_ttl_ms: Option<u64>,
    pub(crate) refresh_early: bool,
    pub(crate) beta: Option<f64>,
    pub(crate) stale_ms: Option<u64>,
    pub(crate) local: bool,
    pub(crate) codec: CodecArg,
    pub(crate) compress: Option<u32>,
    pub(crate) companions: bool,
    pub(crate) krate: Option<syn::Path>,
    /// The collection parameter of a batch function.
    pub(crate) batch: Option<Ident>,
    /// Where `beta` and `lock_ttl` were given, to report them if unused.
    beta_at: Option<Span>,
    lock_ttl_at: Option<Span>,
}

const CACHED_OPTIONS: &[&str] = &[
    "ttl",
    "key",
    "namespace",
    "cache_none",
    "tags",
    "lock",
    "lock_ttl",
    "refresh",
    "beta",
    "stale",
    "local",
    "codec",
    "compress",
    "batch",
    "companions",
    "crate",
];

const INVALIDATE_OPTIONS: &[&str] = &["tags", "namespace", "before", "crate"];

fn list(options: &[&str]) -> String {
    options
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Remembers which options were given, to report duplicates.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn first(&mut self, name: &Ident, errors: &mut Errors) -> bool {
        let n = name.unraw().to_string();
        if self.0.contains(&n) {
            errors.push(syn::Error::new(
                name.span(),
                format!("duplicate option `{n}`"),
            ));
            return false;
        }
        self.0.push(n);
        true
    }
}

fn lit(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(g) => lit(&g.expr),
        _ => None,
    }
}

fn str_lit(value: &Expr, what: &str, errors: &mut Errors) -> Option<LitStr> {
    match lit(value) {
        Some(Lit::Str(s)) => Some(s.clone()),
        _ => {
            errors.push(syn::Error::new_spanned(
                value,
                format!("`{what}` expects a string literal"),
            ));
            None
        }
    }
}

fn bool_lit(value: &Expr, what: &str, errors: &mut Errors) -> Option<bool> {
    match lit(value) {
        Some(Lit::Bool(b)) => Some(b.value),
        _ => {
            errors.push(syn::Error::new_spanned(
                value,
                format!("`{what}` expects `true` or `false`"),
            ));
            None
        }
    }
}

/// Parses `500ms`, `90s`, `5m`, `1h`, `1d` into milliseconds.
pub(crate) fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = s.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// A positive duration: seconds as an integer, or a string with a unit.
fn duration(value: &Expr, what: &str, errors: &mut Errors) -> Option<u64> {
    let help = format!(
        "`{what}` expects seconds (`{what} = 5`) or a duration string: `\"500ms\"`, `\"90s\"`, `\"5m\"`, `\"1h\"`, `\"1d\"`"
    );
    let ms = match lit(value) {
        Some(Lit::Int(i)) => match i.base10_parse::<u64>() {
            Ok(secs) => secs.checked_mul(1_000),
            Err(_) => None,
        },
        Some(Lit::Str(s)) => match parse_duration_ms(&s.value()) {
            Some(ms) => Some(ms),
            None => {
                errors.push(syn::Error::new_spanned(
                    value,
                    format!("`{}` is not a duration: {help}", s.value()),
                ));
                return None;
            }
        },
        _ => None,
    };
    match ms {
        Some(0) => {
            errors.push(syn::Error::new_spanned(
                value,
                format!("`{what}` must be greater than zero"),
            ));
            None
        }
        Some(ms) => Some(ms),
        None => {
            errors.push(syn::Error::new_spanned(value, help));
            None
        }
    }
}

/// A key template: parsed, and checked for characters a key must not hold.
pub(crate) fn template(
    lit: &LitStr,
    kind: TemplateKind,
    errors: &mut Errors,
) -> Option<TemplateLit> {
    let template = match Template::parse(&lit.value()) {
        Ok(t) => t,
        Err(e) => {
            errors.push(syn::Error::new(
                lit.span(),
                format!("invalid key template: {e}"),
            ));
            return None;
        }
    };
    let literals: String = template.literals().collect();
    if let Some(c) = literals.chars().find(|c| c.is_control()) {
        errors.push(syn::Error::new(
            lit.span(),
            format!("a key template cannot contain the control character {c:?}"),
        ));
        return None;
    }
    let forbidden: &[char] = match kind {
        TemplateKind::Key => &['*', '?', '[', ']', '\\'],
        TemplateKind::Tag => &['*', '?', '[', ']', '\\'],
        TemplateKind::Pattern => &['[', ']', '\\'],
    };
    if let Some(c) = literals.chars().find(|c| forbidden.contains(c)) {
        let message = match (kind, c) {
            (TemplateKind::Key, '*') => {
                "a cached key cannot contain `*`: it would make the key a pattern. \
                 Wildcards belong in `#[invalidate(\"...\")]` templates"
                    .to_owned()
            }
            (TemplateKind::Pattern, _) => {
                format!(
                    "`{c}` is not supported in an invalidation template: use `*` (any text) and `?` (one character)"
                )
            }
            _ => format!("a {} cannot contain the glob character `{c}`", kind.noun()),
        };
        errors.push(syn::Error::new(lit.span(), message));
        return None;
    }
    if kind != TemplateKind::Pattern && template.segments.is_empty() {
        errors.push(syn::Error::new(
            lit.span(),
            format!("a {} cannot be empty", kind.noun()),
        ));
        return None;
    }
    if let Some((a, b)) = template.unseparated_placeholders() {
        errors.push(syn::Error::new(
            lit.span(),
            format!(
                "`{{{a}}}` and `{{{b}}}` need a `:` between them: values never contain an unescaped `:`, \
                 so `{{{a}}}:{{{b}}}` keeps distinct values apart, and anything else lets two of them \
                 render the same key"
            ),
        ));
        return None;
    }
    Some(TemplateLit {
        lit: lit.clone(),
        template,
    })
}

/// What a template renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TemplateKind {
    /// A cached key: exact, no wildcards.
    Key,
    /// A tag: exact, no wildcards.
    Tag,
    /// An invalidation target: `*` and `?` allowed.
    Pattern,
}

impl TemplateKind {
    fn noun(self) -> &'static str {
        match self {
            TemplateKind::Key => "cached key",
            TemplateKind::Tag => "tag",
            TemplateKind::Pattern => "invalidation template",
        }
    }
}

fn templates(
    value: &Expr,
    what: &str,
    kind: TemplateKind,
    errors: &mut Errors,
) -> Vec<TemplateLit> {
    let Expr::Array(ExprArray { elems, .. }) = value else {
        errors.push(syn::Error::new_spanned(
            value,
            format!("`{what}` expects an array of strings: `{what} = [\"org:{{org_id}}\"]`"),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in elems {
        if let Some(t) = str_lit(e, what, errors).and_then(|s| template(&s, kind, errors)) {
            out.push(t);
        }
    }
    out
}

fn namespace(value: &Expr, errors: &mut Errors) -> Option<LitStr> {
    let ns = str_lit(value, "namespace", errors)?;
    let v = ns.value();
    if v.is_empty()
        || v.len() > 64
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        errors.push(syn::Error::new(
            ns.span(),
            "a namespace is 1 to 64 letters, digits, `_`, `.` or `-`",
        ));
        return None;
    }
    Some(ns)
}

fn krate(value: &Expr, errors: &mut Errors) -> Option<syn::Path> {
    let s = str_lit(value, "crate", errors)?;
    match s.parse::<syn::Path>() {
        Ok(p) => Some(p),
        Err(_) => {
            errors.push(syn::Error::new(
                s.span(),
                "`crate` expects a path, e.g. `crate = \"my_cachekit\"`",
            ));
            None
        }
    }
}

/// `batch = ids` (or `batch = "ids"`): the collection parameter.
fn batch_param(value: &Expr, errors: &mut Errors) -> Option<Ident> {
    if let Expr::Path(p) = value
        && p.qself.is_none()
        && let Some(id) = p.path.get_ident()
    {
        return Some(id.clone());
    }
    if let Some(Lit::Str(s)) = lit(value)
        && let Ok(id) = s.parse::<Ident>()
    {
        return Some(id);
    }
    errors.push(syn::Error::new_spanned(
        value,
        "`batch` names the collection parameter: `batch = ids`",
    ));
    None
}

fn unknown(name: &Ident, options: &[&str], errors: &mut Errors) {
    errors.push(syn::Error::new(
        name.span(),
        format!(
            "unknown option `{}`; expected one of {}",
            name.unraw(),
            list(options)
        ),
    ));
}

impl CachedArgs {
    /// Interprets `#[cached(...)]`'s arguments, collecting every error.
    pub(crate) fn from_args(args: Vec<RawArg>, errors: &mut Errors) -> CachedArgs {
        let mut out = CachedArgs {
            ttl_ms: None,
            key: None,
            namespace: None,
            cache_none: true,
            tags: Vec::new(),
            lock: false,
            lock_ttl_ms: None,
            refresh_early: false,
            beta: None,
            stale_ms: None,
            local: false,
            codec: CodecArg::Json,
            compress: None,
            companions: true,
            krate: None,
            batch: None,
            beta_at: None,
            lock_ttl_at: None,
        };
        let mut seen = Seen::default();
        for arg in args {
            let (name, value) = match arg {
                RawArg::Named { name, value } => (name, value),
                RawArg::Positional(value) => {
                    errors.push(syn::Error::new_spanned(
                        &value,
                        format!(
                            "expected `option = value`; options are {}",
                            list(CACHED_OPTIONS)
                        ),
                    ));
                    continue;
                }
            };
            if !seen.first(&name, errors) {
                continue;
            }
            match name.unraw().to_string().as_str() {
                "ttl" => out.ttl_ms = duration(&value, "ttl", errors),
                "key" => {
                    out.key = str_lit(&value, "key", errors)
                        .and_then(|s| template(&s, TemplateKind::Key, errors))
                }
                "namespace" => out.namespace = namespace(&value, errors),
                "cache_none" => {
                    out.cache_none = bool_lit(&value, "cache_none", errors).unwrap_or(true)
                }
                "tags" => out.tags = templates(&value, "tags", TemplateKind::Tag, errors),
                "lock" => out.lock = bool_lit(&value, "lock", errors).unwrap_or(false),
                "lock_ttl" => {
                    out.lock_ttl_at = Some(name.span());
                    out.lock_ttl_ms = duration(&value, "lock_ttl", errors);
                }
                "refresh" => match str_lit(&value, "refresh", errors) {
                    Some(s) if s.value() == "early" => out.refresh_early = true,
                    Some(s) if s.value() == "on_miss" => out.refresh_early = false,
                    Some(s) => errors.push(syn::Error::new(
                        s.span(),
                        format!(
                            "unknown refresh `{}`; expected `\"early\"` or `\"on_miss\"`",
                            s.value()
                        ),
                    )),
                    None => {}
                },
                "beta" => {
                    out.beta_at = Some(name.span());
                    match lit(&value) {
                        Some(Lit::Float(f)) => {
                            out.beta = f.base10_parse().ok().filter(|b: &f64| *b > 0.0)
                        }
                        Some(Lit::Int(i)) => {
                            out.beta = i
                                .base10_parse::<u32>()
                                .ok()
                                .map(f64::from)
                                .filter(|b| *b > 0.0)
                        }
                        _ => {}
                    }
                }
                "stale" => out.stale_ms = duration(&value, "stale", errors),
                "local" => out.local = bool_lit(&value, "local", errors).unwrap_or(false),
                "codec" => match str_lit(&value, "codec", errors) {
                    Some(s) if s.value() == "json" => out.codec = CodecArg::Json,
                    Some(s) if s.value() == "msgpack" || s.value() == "messagepack" => {
                        out.codec = CodecArg::MsgPack
                    }
                    Some(s) => errors.push(syn::Error::new(
                        s.span(),
                        format!(
                            "unknown codec `{}`; expected `\"json\"` or `\"msgpack\"`",
                            s.value()
                        ),
                    )),
                    None => {}
                },
                "compress" => match lit(&value) {
                    Some(Lit::Bool(b)) => out.compress = b.value.then_some(1024),
                    Some(Lit::Int(i)) => match i.base10_parse::<u32>() {
                        Ok(n) => out.compress = Some(n),
                        Err(_) => errors.push(syn::Error::new(
                            i.span(),
                            "`compress` expects a size in bytes",
                        )),
                    },
                    _ => errors.push(syn::Error::new_spanned(
                        &value,
                        "`compress` expects `true` (above 1 KiB) or a size in bytes",
                    )),
                },
                "companions" => {
                    out.companions = bool_lit(&value, "companions", errors).unwrap_or(true)
                }
                "batch" => out.batch = batch_param(&value, errors),
                "crate" => out.krate = krate(&value, errors),
                _ => unknown(&name, CACHED_OPTIONS, errors),
            }
            if name == "beta" && out.beta.is_none() {
                errors.push(syn::Error::new_spanned(
                    &value,
                    "`beta` expects a positive number, e.g. `beta = 1.0`",
                ));
            }
        }
        if out.beta.is_some() && !out.refresh_early {
            errors.push(syn::Error::new(
                Span::call_site(),
                "`beta` only applies with `refresh = \"early\"`",
            ));
        }
        if out.lock_ttl_ms.is_some() && !out.lock {
            errors.push(syn::Error::new(
                Span::call_site(),
                "`lock_ttl` only applies with `lock = true`",
            ));
        }
        out
    }
}

/// The options of `#[invalidate]`.
pub(crate) struct InvalidateArgs {
    pub(crate) keys: Vec<TemplateLit>,
    pub(crate) tags: Vec<TemplateLit>,
    pub(crate) namespaces: Vec<LitStr>,
    pub(crate) before: bool,
    pub(crate) krate: Option<syn::Path>,
}

impl InvalidateArgs {
    /// Interprets `#[invalidate(...)]`'s arguments, collecting every error.
    pub(crate) fn from_args(args: Vec<RawArg>, errors: &mut Errors) -> InvalidateArgs {
        let mut out = InvalidateArgs {
            keys: Vec::new(),
            tags: Vec::new(),
            namespaces: Vec::new(),
            before: false,
            krate: None,
        };
        let mut seen = Seen::default();
        for arg in args {
            match arg {
                RawArg::Positional(value) => {
                    if let Some(s) = str_lit(&value, "a key or pattern", errors)
                        && let Some(t) = template(&s, TemplateKind::Pattern, errors)
                    {
                        out.keys.push(t);
                    }
                }
                RawArg::Named { name, value } => {
                    if !seen.first(&name, errors) {
                        continue;
                    }
                    match name.unraw().to_string().as_str() {
                        "tags" => out.tags = templates(&value, "tags", TemplateKind::Tag, errors),
                        "namespace" => out.namespaces.extend(namespace(&value, errors)),
                        "before" => {
                            out.before = bool_lit(&value, "before", errors).unwrap_or(false)
                        }
                        "crate" => out.krate = krate(&value, errors),
                        _ => unknown(&name, INVALIDATE_OPTIONS, errors),
                    }
                }
            }
        }
        if out.keys.is_empty()
            && out.tags.is_empty()
            && out.namespaces.is_empty()
            && errors.is_empty()
        {
            errors.push(syn::Error::new(
                Span::call_site(),
                "#[invalidate] needs something to invalidate: a key or pattern (`\"user:{id}\"`), `tags = [...]` or `namespace = \"...\"`",
            ));
        }
        out
    }
}

/// The options of `#[cache_key(...)]` on a struct: an optional template.
pub(crate) fn cache_key_template(
    attr: &syn::Attribute,
    errors: &mut Errors,
) -> Option<TemplateLit> {
    match attr.parse_args::<LitStr>() {
        Ok(lit) => template(&lit, TemplateKind::Key, errors),
        Err(_) => {
            errors.push(syn::Error::new(
                attr.span(),
                "expected a key template: `#[cache_key(\"hero:{lang}:{id}\")]`",
            ));
            None
        }
    }
}

/// Whether a field's `#[cache_key(...)]` says `skip`.
pub(crate) fn field_skip(attr: &syn::Attribute, errors: &mut Errors) -> bool {
    match attr.parse_args::<Ident>() {
        Ok(id) if id == "skip" => true,
        _ => {
            errors.push(syn::Error::new(
                attr.span(),
                "expected `#[cache_key(skip)]` on a field",
            ));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90s"), Some(90_000));
        assert_eq!(parse_duration_ms("5m"), Some(300_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("5"), None);
        assert_eq!(parse_duration_ms("5x"), None);
        assert_eq!(parse_duration_ms("s"), None);
    }

    #[test]
    fn collects_every_error() {
        let args = parse_args(quote::quote!(tll = 5, ttl = 0, ttl = 3, key = "a*")).unwrap();
        let mut errors = Errors::default();
        CachedArgs::from_args(args, &mut errors);
        let message = errors
            .finish()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>();
        assert_eq!(message.len(), 4, "{message:?}");
        assert!(message[0].contains("unknown option `tll`"));
        assert!(message[1].contains("greater than zero"));
        assert!(message[2].contains("duplicate option `ttl`"));
        assert!(message[3].contains("cannot contain `*`"));
    }
}
