//! Parsing of the attributes' arguments: `#[cached(...)]`,
//! `#[invalidate(...)]` and `#[cache_key(...)]`.
//!
//! Each option is a `syn::custom_keyword!`, declared once in an
//! `options!` list that also names it in messages. An argument is parsed
//! as `option = value` (or a bare value), then its value is interpreted on
//! its own, so that every problem is reported in one compile, each at its
//! own token.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprArray, ExprCall, ExprLit, ExprPath, Ident, Lit, LitStr, Token};

use crate::errors::{Code, Errors};
use crate::template::Template;

/// One keyword per option.
mod kw {
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(key);
    syn::custom_keyword!(namespace);
    syn::custom_keyword!(cache_none);
    syn::custom_keyword!(tags);
    syn::custom_keyword!(lock);
    syn::custom_keyword!(lock_ttl);
    syn::custom_keyword!(refresh);
    syn::custom_keyword!(beta);
    syn::custom_keyword!(stale);
    syn::custom_keyword!(local);
    syn::custom_keyword!(codec);
    syn::custom_keyword!(compress);
    syn::custom_keyword!(fail_safe);
    syn::custom_keyword!(fail_safe_throttle);
    syn::custom_keyword!(soft_timeout);
    syn::custom_keyword!(hard_timeout);
    syn::custom_keyword!(unless);
    syn::custom_keyword!(ttl_from);
    syn::custom_keyword!(cache_err);
    syn::custom_keyword!(jitter);
    syn::custom_keyword!(scope);
    syn::custom_keyword!(max_entries);
    syn::custom_keyword!(batch);
    syn::custom_keyword!(companions);
    syn::custom_keyword!(before);
    syn::custom_keyword!(within);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(flavor);
    syn::custom_keyword!(worker_threads);
    syn::custom_keyword!(start_paused);
    syn::custom_keyword!(redis);
}

/// The token type of an option's keyword (`crate` is Rust's own).
macro_rules! keyword {
    (crate) => {
        Token![crate]
    };
    ($k:ident) => {
        kw::$k
    };
}

/// Declares the options of one attribute: an enum with a variant per
/// option, parsed by the option's keyword, and the options' names for
/// messages, from one list.
macro_rules! options {
    ($(#[$m:meta])* enum $name:ident { $($(#[$vm:meta])* $variant:ident = $kw:tt,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $($(#[$vm])* $variant,)*
        }

        impl AttrOption for $name {
            const NAMES: &'static [&'static str] = &[$(stringify!($kw),)*];

            fn parse_keyword(input: ParseStream<'_>) -> syn::Result<Option<(Self, Span)>> {
                $(
                    if input.peek(keyword!($kw)) && input.peek2(Token![=]) {
                        let token: keyword!($kw) = input.parse()?;
                        return Ok(Some(($name::$variant, token.span)));
                    }
                )*
                Ok(None)
            }

            fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }
        }
    };
}

/// The options of one attribute.
pub(crate) trait AttrOption: Copy + PartialEq + Sized {
    /// Every option's name, in declaration order.
    const NAMES: &'static [&'static str];
    /// Parses `option` if the input starts with `option =`.
    fn parse_keyword(input: ParseStream<'_>) -> syn::Result<Option<(Self, Span)>>;
    /// The option's name.
    fn name(self) -> &'static str;
}

options! {
    /// The options of `#[cached]`.
    enum CachedOption {
        Ttl = ttl,
        Key = key,
        Namespace = namespace,
        CacheNone = cache_none,
        Tags = tags,
        Lock = lock,
        LockTtl = lock_ttl,
        Refresh = refresh,
        Beta = beta,
        Stale = stale,
        Local = local,
        Codec = codec,
        Compress = compress,
        FailSafe = fail_safe,
        FailSafeThrottle = fail_safe_throttle,
        SoftTimeout = soft_timeout,
        HardTimeout = hard_timeout,
        Unless = unless,
        TtlFrom = ttl_from,
        CacheErr = cache_err,
        Jitter = jitter,
        Scope = scope,
        MaxEntries = max_entries,
        Batch = batch,
        Companions = companions,
        Crate = crate,
    }
}

options! {
    /// The options of `#[invalidate]` (besides its positional targets).
    enum InvalidateOption {
        Tags = tags,
        Namespace = namespace,
        Within = within,
        Before = before,
        Crate = crate,
    }
}

options! {
    /// The options of `#[cachekit::test]` (besides a bare `redis`).
    enum TestOption {
        Flavor = flavor,
        WorkerThreads = worker_threads,
        StartPaused = start_paused,
        Redis = redis,
        Crate = crate,
    }
}

/// One argument as written.
pub(crate) enum Arg<O> {
    /// `option = value`, with the keyword's span.
    Known { option: O, at: Span, value: Expr },
    /// `name = value` where `name` is no option.
    Unknown { name: Ident },
    /// A bare value (the targets of `#[invalidate("user:{id}")]`).
    Positional(Expr),
}

impl<O: AttrOption> Parse for Arg<O> {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if let Some((option, at)) = O::parse_keyword(input)? {
            input.parse::<Token![=]>()?;
            let value = input.parse()?;
            return Ok(Arg::Known { option, at, value });
        }
        if input.peek(Ident::peek_any) && input.peek2(Token![=]) {
            let name = input.call(Ident::parse_any)?;
            input.parse::<Token![=]>()?;
            input.parse::<Expr>()?;
            return Ok(Arg::Unknown { name });
        }
        Ok(Arg::Positional(input.parse()?))
    }
}

/// Parses the comma-separated arguments of an attribute; a syntax error is
/// reported and leaves no arguments.
fn parse_args<O: AttrOption>(tokens: TokenStream, errors: &mut Errors) -> Vec<Arg<O>> {
    let parser = Punctuated::<Arg<O>, Token![,]>::parse_terminated;
    match syn::parse::Parser::parse2(parser, tokens) {
        Ok(args) => args.into_iter().collect(),
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    }
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Remembers which options were given, to report duplicates.
struct Seen<O>(Vec<O>);

impl<O: AttrOption> Seen<O> {
    /// Whether `option` is given for the first time; reports it otherwise.
    fn first(&mut self, option: O, at: Span, errors: &mut Errors) -> bool {
        if self.0.contains(&option) {
            errors.push(
                Code::DuplicateOption.error(at, format!("duplicate option `{}`", option.name())),
            );
            return false;
        }
        self.0.push(option);
        true
    }
}

fn unknown<O: AttrOption>(name: &Ident, errors: &mut Errors) {
    errors.push(Code::UnknownOption.error(
        name.span(),
        format!(
            "unknown option `{}`; expected one of {}",
            name.unraw(),
            list(O::NAMES)
        ),
    ));
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
            errors.push(
                Code::ExpectsString.spanned(value, format!("`{what}` expects a string literal")),
            );
            None
        }
    }
}

fn bool_lit(value: &Expr, what: &str, errors: &mut Errors) -> Option<bool> {
    match lit(value) {
        Some(Lit::Bool(b)) => Some(b.value),
        _ => {
            errors.push(
                Code::ExpectsBool.spanned(value, format!("`{what}` expects `true` or `false`")),
            );
            None
        }
    }
}

/// A duration as written: seconds (`5`) or a string with a unit
/// (`"1.5s"`). The macro does not read it: the runtime's parser does, at
/// compile time (`__private::duration`, a `const fn`, in the function's
/// `static` site), so `ttl = "1.5s"` means what `CACHE_DEFAULT_TTL=1.5s`
/// means, and a bad one stops the compilation at the literal.
#[derive(Clone)]
pub(crate) struct DurationLit {
    /// The text the runtime parses.
    pub(crate) text: String,
    /// The literal's span.
    pub(crate) span: Span,
}

impl DurationLit {
    /// `__private::duration("...")`, every token at the literal, so that
    /// rustc's const-evaluation error points there.
    pub(crate) fn expr(&self, p: &TokenStream) -> TokenStream {
        let text = LitStr::new(&self.text, self.span);
        let call = quote::quote!(#p::duration(#text));
        respan(call, self.span)
    }
}

/// `tokens`, every one of them at `span`.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = proc_macro2::TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// A duration: seconds as an integer, or a string that the runtime parses.
/// Anything else is reported here; a string that is no duration (or a
/// zero) is reported by rustc, at the literal, with the runtime's message.
fn duration(value: &Expr, what: &str, errors: &mut Errors) -> Option<DurationLit> {
    match lit(value) {
        Some(Lit::Str(s)) => Some(DurationLit {
            text: s.value(),
            span: s.span(),
        }),
        Some(Lit::Int(i)) => Some(DurationLit {
            text: i.base10_digits().to_owned(),
            span: i.span(),
        }),
        _ => {
            errors.push(Code::NotADuration.spanned(
                value,
                format!(
                    "`{what}` expects seconds (`{what} = 5`) or a duration string: \
                     `\"500ms\"`, `\"1.5s\"`, `\"90s\"`, `\"5m\"`, `\"1h\"`, `\"1d\"`"
                ),
            ));
            None
        }
    }
}

/// A key template and the literal it came from.
#[derive(Clone)]
pub(crate) struct TemplateLit {
    pub(crate) lit: LitStr,
    pub(crate) template: Template,
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

/// A key template: parsed, and checked for characters a key must not hold.
pub(crate) fn template(
    lit: &LitStr,
    kind: TemplateKind,
    errors: &mut Errors,
) -> Option<TemplateLit> {
    let span = lit.span();
    let template = match Template::parse(&lit.value()) {
        Ok(t) => t,
        Err(e) => {
            errors.push(Code::TemplateSyntax.error(span, format!("invalid key template: {e}")));
            return None;
        }
    };
    let literals: String = template.literals().collect();
    let forbidden: &[char] = match kind {
        TemplateKind::Key | TemplateKind::Tag => &['*', '?', '[', ']', '\\'],
        TemplateKind::Pattern => &['[', ']', '\\'],
    };
    let error = if let Some(c) = literals.chars().find(|c| c.is_control()) {
        Code::ControlCharacter.error(
            span,
            format!("a key template cannot contain the control character {c:?}"),
        )
    } else if let Some(c) = literals.chars().find(|c| forbidden.contains(c)) {
        match (kind, c) {
            (TemplateKind::Key, '*') => Code::StarInKey.error(
                span,
                "a cached key cannot contain `*`: it would make the key a pattern. \
                 Wildcards belong in `#[invalidate(\"...\")]` templates",
            ),
            (TemplateKind::Pattern, _) => Code::BadGlob.error(
                span,
                format!(
                    "`{c}` is not supported in an invalidation template: use `*` (any text) and `?` (one character)"
                ),
            ),
            _ => Code::GlobInTag.error(
                span,
                format!(
                    "a {} cannot contain the glob character `{c}`: it names one entry or tag exactly",
                    kind.noun()
                ),
            ),
        }
    } else if kind != TemplateKind::Pattern && template.segments.is_empty() {
        Code::EmptyTemplate.error(span, format!("a {} cannot be empty", kind.noun()))
    } else if let Some((a, b)) = template.unseparated_placeholders() {
        Code::UnseparatedPlaceholders.error(
            span,
            format!(
                "`{{{a}}}` and `{{{b}}}` need a `:` between them: values never contain an unescaped `:`, \
                 so `{{{a}}}:{{{b}}}` keeps distinct values apart, and anything else lets two of them \
                 render the same key"
            ),
        )
    } else {
        return Some(TemplateLit {
            lit: lit.clone(),
            template,
        });
    };
    errors.push(error);
    None
}

/// `tags = ["org:{org_id}", ...]`.
fn templates(
    value: &Expr,
    what: &str,
    kind: TemplateKind,
    errors: &mut Errors,
) -> Vec<TemplateLit> {
    let Expr::Array(ExprArray { elems, .. }) = value else {
        errors.push(Code::ExpectsArray.spanned(
            value,
            format!("`{what}` expects an array of strings: `{what} = [\"org:{{org_id}}\"]`"),
        ));
        return Vec::new();
    };
    elems
        .iter()
        .filter_map(|e| str_lit(e, what, errors).and_then(|s| template(&s, kind, errors)))
        .collect()
}

fn namespace(value: &Expr, what: &str, errors: &mut Errors) -> Option<LitStr> {
    let ns = str_lit(value, what, errors)?;
    let v = ns.value();
    let valid = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        errors.push(Code::BadNamespace.error(
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
            errors.push(Code::BadCratePath.error(
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
    errors.push(Code::BadBatchParam.spanned(
        value,
        "`batch` names the collection parameter: `batch = ids`",
    ));
    None
}

/// `refresh = "early"` (or the default, `"on_miss"`): whether to refresh
/// early.
fn refresh(value: &Expr, errors: &mut Errors) -> Option<bool> {
    let s = str_lit(value, "refresh", errors)?;
    match s.value().as_str() {
        "early" => Some(true),
        "on_miss" => Some(false),
        other => {
            errors.push(Code::UnknownRefresh.error(
                s.span(),
                format!("unknown refresh `{other}`; expected `\"early\"` or `\"on_miss\"`"),
            ));
            None
        }
    }
}

/// `beta = 1.5`: a positive, finite number.
fn beta(value: &Expr, errors: &mut Errors) -> Option<f64> {
    let beta = match lit(value) {
        Some(Lit::Float(f)) => f.base10_parse::<f64>().ok(),
        Some(Lit::Int(i)) => i.base10_parse::<u32>().ok().map(f64::from),
        _ => None,
    };
    let beta = beta.filter(|b| b.is_finite() && *b > 0.0);
    if beta.is_none() {
        errors.push(
            Code::BadBeta.spanned(value, "`beta` expects a positive number, e.g. `beta = 1.0`"),
        );
    }
    beta
}

/// The codec of `#[cached(codec = "...")]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CodecArg {
    #[default]
    Json,
    MsgPack,
}

fn codec(value: &Expr, errors: &mut Errors) -> Option<CodecArg> {
    let s = str_lit(value, "codec", errors)?;
    match s.value().as_str() {
        "json" => Some(CodecArg::Json),
        "msgpack" | "messagepack" => Some(CodecArg::MsgPack),
        other => {
            errors.push(Code::UnknownCodec.error(
                s.span(),
                format!("unknown codec `{other}`; expected `\"json\"` or `\"msgpack\"`"),
            ));
            None
        }
    }
}

/// `compress = ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Compress {
    /// `false`, or not given.
    #[default]
    Off,
    /// `true`: above the runtime's default threshold.
    Default,
    /// A threshold in bytes.
    Above(u32),
}

/// `compress = true` (above the runtime's default threshold), `false`, or
/// a threshold in bytes.
fn compress(value: &Expr, errors: &mut Errors) -> Compress {
    match lit(value) {
        Some(Lit::Bool(b)) if b.value => return Compress::Default,
        Some(Lit::Bool(_)) => return Compress::Off,
        Some(Lit::Int(i)) => {
            if let Ok(n) = i.base10_parse::<u32>() {
                return Compress::Above(n);
            }
        }
        _ => {}
    }
    errors.push(Code::BadCompress.spanned(
        value,
        "`compress` expects `true` (above 1 KiB), `false`, or a size in bytes up to 4 GiB",
    ));
    Compress::Off
}

/// `jitter = "10%"` or `jitter = 10`: a percentage of the TTL.
fn jitter(value: &Expr, errors: &mut Errors) -> Option<u8> {
    let percent = match lit(value) {
        Some(Lit::Int(i)) => i.base10_parse::<u32>().ok(),
        Some(Lit::Str(s)) => s
            .value()
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<u32>().ok()),
        _ => None,
    };
    match percent {
        Some(n) if n <= 100 => Some(n as u8),
        _ => {
            errors.push(Code::BadJitter.spanned(
                value,
                "`jitter` takes up to that share of the TTL off at random: a percentage from 0 to 100, \
                 `jitter = \"10%\"` or `jitter = 10`",
            ));
            None
        }
    }
}

/// `scope = "process"` (or the default, `"shared"`): whether entries stay
/// in this process.
fn scope(value: &Expr, errors: &mut Errors) -> Option<bool> {
    let s = str_lit(value, "scope", errors)?;
    match s.value().as_str() {
        "process" => Some(true),
        "shared" => Some(false),
        other => {
            errors.push(Code::UnknownScope.error(
                s.span(),
                format!(
                    "unknown scope `{other}`; expected `\"process\"` (this process only, values need no serde) \
                     or `\"shared\"` (the configured store, the default)"
                ),
            ));
            None
        }
    }
}

/// `max_entries = 10_000`: a positive count.
fn max_entries(value: &Expr, errors: &mut Errors) -> Option<u64> {
    if let Some(Lit::Int(i)) = lit(value)
        && let Ok(n) = i.base10_parse::<u64>()
        && n > 0
    {
        return Some(n);
    }
    errors.push(Code::BadMaxEntries.spanned(
        value,
        "`max_entries` expects a positive number of entries, e.g. `max_entries = 10_000`",
    ));
    None
}

/// `unless = |r: &Report| r.partial`, `ttl_from = ttl_of`: a closure or a
/// function path, as tokens. Its type is rustc's to check, at the closure.
fn hook(value: &Expr, what: &str, errors: &mut Errors) -> Option<Expr> {
    if let Some(Lit::Str(s)) = lit(value) {
        let example = if what == "unless" {
            "unless = |r: &Report| r.partial"
        } else {
            "ttl_from = |q: &Quote| q.valid_for"
        };
        errors.push(Code::HookInString.error(
            s.span(),
            format!(
                "`{what}` takes a closure or a function path as Rust tokens, not a string: `{example}`"
            ),
        ));
        return None;
    }
    Some(value.clone())
}

/// The options of `#[cached]`.
#[derive(Default)]
pub(crate) struct CachedArgs {
    pub(crate) ttl: Option<DurationLit>,
    pub(crate) key: Option<TemplateLit>,
    pub(crate) namespace: Option<LitStr>,
    /// `cache_none = false`.
    pub(crate) skip_none: bool,
    pub(crate) tags: Vec<TemplateLit>,
    pub(crate) lock: bool,
    pub(crate) lock_ttl: Option<DurationLit>,
    pub(crate) refresh_early: bool,
    pub(crate) beta: Option<f64>,
    pub(crate) stale: Option<DurationLit>,
    pub(crate) local: bool,
    pub(crate) codec: CodecArg,
    pub(crate) compress: Compress,
    pub(crate) fail_safe: Option<DurationLit>,
    pub(crate) fail_safe_throttle: Option<DurationLit>,
    pub(crate) soft_timeout: Option<DurationLit>,
    pub(crate) hard_timeout: Option<DurationLit>,
    pub(crate) unless: Option<Expr>,
    pub(crate) ttl_from: Option<Expr>,
    pub(crate) cache_err: Option<DurationLit>,
    pub(crate) jitter: Option<u8>,
    /// `scope = "process"`.
    pub(crate) process: bool,
    pub(crate) max_entries: Option<u64>,
    /// `companions = false`.
    pub(crate) no_companions: bool,
    pub(crate) krate: Option<syn::Path>,
    /// The collection parameter of a batch function.
    pub(crate) batch: Option<Ident>,
    /// Every option given, where its keyword is, in order.
    given: Vec<(CachedOption, Span)>,
}

impl CachedArgs {
    /// Parses and interprets `#[cached(...)]`'s arguments, collecting every
    /// error.
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> CachedArgs {
        let mut out = CachedArgs::default();
        let mut seen = Seen(Vec::new());
        for arg in parse_args::<CachedOption>(tokens, errors) {
            match arg {
                Arg::Known { option, at, value } => {
                    if seen.first(option, at, errors) {
                        out.given.push((option, at));
                        out.set(option, &value, errors);
                    }
                }
                Arg::Unknown { name } => unknown::<CachedOption>(&name, errors),
                Arg::Positional(value) => errors.push(Code::PositionalInCached.spanned(
                    &value,
                    format!(
                        "expected `option = value`; options are {}",
                        list(CachedOption::NAMES)
                    ),
                )),
            }
        }
        out.check_combinations(errors);
        out
    }

    fn set(&mut self, option: CachedOption, value: &Expr, errors: &mut Errors) {
        use CachedOption as O;
        let name = option.name();
        match option {
            O::Ttl => self.ttl = duration(value, name, errors),
            O::Key => {
                self.key = str_lit(value, name, errors)
                    .and_then(|s| template(&s, TemplateKind::Key, errors))
            }
            O::Namespace => self.namespace = namespace(value, name, errors),
            O::CacheNone => self.skip_none = !bool_lit(value, name, errors).unwrap_or(true),
            O::Tags => self.tags = templates(value, name, TemplateKind::Tag, errors),
            O::Lock => self.lock = bool_lit(value, name, errors).unwrap_or(false),
            O::LockTtl => self.lock_ttl = duration(value, name, errors),
            O::Refresh => self.refresh_early = refresh(value, errors).unwrap_or(false),
            O::Beta => self.beta = beta(value, errors),
            O::Stale => self.stale = duration(value, name, errors),
            O::Local => self.local = bool_lit(value, name, errors).unwrap_or(false),
            O::Codec => self.codec = codec(value, errors).unwrap_or_default(),
            O::Compress => self.compress = compress(value, errors),
            O::FailSafe => self.fail_safe = duration(value, name, errors),
            O::FailSafeThrottle => self.fail_safe_throttle = duration(value, name, errors),
            O::SoftTimeout => self.soft_timeout = duration(value, name, errors),
            O::HardTimeout => self.hard_timeout = duration(value, name, errors),
            O::Unless => self.unless = hook(value, name, errors),
            O::TtlFrom => self.ttl_from = hook(value, name, errors),
            O::CacheErr => self.cache_err = duration(value, name, errors),
            O::Jitter => self.jitter = jitter(value, errors),
            O::Scope => self.process = scope(value, errors).unwrap_or(false),
            O::MaxEntries => self.max_entries = max_entries(value, errors),
            O::Batch => self.batch = batch_param(value, errors),
            O::Companions => self.no_companions = !bool_lit(value, name, errors).unwrap_or(true),
            O::Crate => self.krate = krate(value, errors),
        }
    }

    /// Where `option` was given, if it was.
    pub(crate) fn at(&self, option: CachedOption) -> Option<Span> {
        self.given
            .iter()
            .find(|(o, _)| *o == option)
            .map(|(_, at)| *at)
    }

    /// The options given, with where they were, in order.
    pub(crate) fn given(&self) -> impl Iterator<Item = (CachedOption, Span)> + '_ {
        self.given.iter().copied()
    }

    /// The first option that makes the computation run on its own task
    /// (a refresh in the background, the rest of a computation past its
    /// soft timeout), so that it must own its inputs; and where it is.
    pub(crate) fn detached(&self) -> Option<(CachedOption, Span)> {
        self.given().find(|(o, _)| match o {
            CachedOption::Stale | CachedOption::SoftTimeout => true,
            CachedOption::Refresh => self.refresh_early,
            _ => false,
        })
    }

    /// Options that only apply with another one, reported at the option.
    fn check_combinations(&self, errors: &mut Errors) {
        use CachedOption as O;
        if let Some(at) = self.at(O::Beta)
            && !self.refresh_early
        {
            errors.push(
                Code::BetaWithoutEarly.error(at, "`beta` only applies with `refresh = \"early\"`"),
            );
        }
        if let Some(at) = self.at(O::LockTtl)
            && !self.lock
        {
            errors.push(
                Code::LockTtlWithoutLock.error(at, "`lock_ttl` only applies with `lock = true`"),
            );
        }
        if let Some(at) = self.at(O::SoftTimeout)
            && self.at(O::Stale).is_none()
            && self.at(O::FailSafe).is_none()
        {
            errors.push(Code::SoftTimeoutAlone.error(
                at,
                "`soft_timeout` would do nothing here: a caller stops waiting at the soft timeout only \
                 when a value can serve in the result's place; add `stale = \"...\"` or `fail_safe = \"...\"`, \
                 or use `hard_timeout` to abandon the computation",
            ));
        }
        if let Some(at) = self.at(O::FailSafeThrottle)
            && self.at(O::FailSafe).is_none()
        {
            errors.push(Code::ThrottleWithoutFailSafe.error(
                at,
                "`fail_safe_throttle` only applies with `fail_safe = \"...\"`: it is how long a last good \
                 value is served before the source is tried again",
            ));
        }
        if let Some(at) = self.at(O::MaxEntries)
            && !self.process
        {
            errors.push(Code::MaxEntriesWithoutProcess.error(
                at,
                "`max_entries` bounds a function's own map in this process: it only applies with \
                 `scope = \"process\"` (a shared store is bounded by its own configuration)",
            ));
        }
        if self.process {
            for (option, at) in self.given() {
                let why = match option {
                    O::Lock => {
                        "a lease is shared between processes, and these entries never leave this one"
                    }
                    O::Local => "process-scope entries are in process already",
                    O::Codec | O::Compress => {
                        "process-scope entries are kept as values, never encoded"
                    }
                    _ => continue,
                };
                errors.push(Code::ProcessScopeCombined.error(
                    at,
                    format!(
                        "`{}` does not apply with `scope = \"process\"`: {why}",
                        option.name()
                    ),
                ));
            }
        }
    }
}

/// A typed target, `get_hero(id)` or `Self::find(self, id)`: the call as
/// written, whose path names a cached function.
pub(crate) struct EntryTarget {
    pub(crate) call: ExprCall,
    pub(crate) path: ExprPath,
}

/// The options of `#[invalidate]`.
pub(crate) struct InvalidateArgs {
    /// Key templates and patterns.
    pub(crate) keys: Vec<TemplateLit>,
    /// Typed targets.
    pub(crate) entries: Vec<EntryTarget>,
    pub(crate) tags: Vec<TemplateLit>,
    pub(crate) namespaces: Vec<LitStr>,
    /// The namespace `keys` are resolved in, and where it was given.
    pub(crate) within: Option<(LitStr, Span)>,
    pub(crate) before: bool,
    pub(crate) krate: Option<syn::Path>,
}

impl InvalidateArgs {
    /// Parses and interprets `#[invalidate(...)]`'s arguments, collecting
    /// every error.
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> InvalidateArgs {
        let mut out = InvalidateArgs {
            keys: Vec::new(),
            entries: Vec::new(),
            tags: Vec::new(),
            namespaces: Vec::new(),
            within: None,
            before: false,
            krate: None,
        };
        let mut seen = Seen(Vec::new());
        for arg in parse_args::<InvalidateOption>(tokens, errors) {
            match arg {
                Arg::Positional(value) => out.target(value, errors),
                Arg::Unknown { name } => unknown::<InvalidateOption>(&name, errors),
                Arg::Known { option, at, value } => {
                    if seen.first(option, at, errors) {
                        out.set(option, at, &value, errors);
                    }
                }
            }
        }
        out
    }

    fn set(&mut self, option: InvalidateOption, at: Span, value: &Expr, errors: &mut Errors) {
        use InvalidateOption as O;
        let name = option.name();
        match option {
            O::Tags => self.tags = templates(value, name, TemplateKind::Tag, errors),
            O::Namespace => self.namespaces.extend(namespace(value, name, errors)),
            O::Within => self.within = namespace(value, name, errors).map(|ns| (ns, at)),
            O::Before => self.before = bool_lit(value, name, errors).unwrap_or(false),
            O::Crate => self.krate = krate(value, errors),
        }
    }

    /// A positional argument: a key template, or a typed target.
    fn target(&mut self, value: Expr, errors: &mut Errors) {
        match value {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => {
                self.keys
                    .extend(template(&s, TemplateKind::Pattern, errors));
            }
            Expr::Call(call) if matches!(&*call.func, Expr::Path(_)) => {
                let Expr::Path(path) = (*call.func).clone() else {
                    unreachable!("matched")
                };
                self.entries.push(EntryTarget { call, path });
            }
            Expr::MethodCall(m) => {
                let receiver = quote::ToTokens::to_token_stream(&m.receiver).to_string();
                let args: Vec<String> = std::iter::once(receiver)
                    .chain(
                        m.args
                            .iter()
                            .map(|a| quote::ToTokens::to_token_stream(a).to_string()),
                    )
                    .collect();
                let suggestion = format!("Self::{}({})", m.method, args.join(", "));
                errors.push(Code::MethodCallTarget.spanned(
                    &m,
                    format!(
                        "a typed target names its function by path, the receiver first: write `{suggestion}`"
                    ),
                ));
            }
            other => errors.push(Code::BadTarget.spanned(
                &other,
                "expected a key template (`\"user:{id}\"`) or a call naming a cached function's \
                 entry (`get_user(id)`, `Self::find(self, id)`)",
            )),
        }
    }
}

/// The options of `#[cachekit::test]`: tokio's test options, and `redis`.
pub(crate) struct TestArgs {
    /// `flavor = "multi_thread"`.
    pub(crate) multi_thread: bool,
    pub(crate) worker_threads: Option<usize>,
    pub(crate) start_paused: bool,
    /// A bare `redis`: the test's cache is on the Redis of `REDIS_URL`.
    pub(crate) redis: bool,
    /// `redis = <url>`: on the Redis at that URL (any expression that
    /// displays as one, evaluated when the test starts).
    pub(crate) redis_url: Option<Expr>,
    pub(crate) krate: Option<syn::Path>,
}

impl TestArgs {
    /// Parses and interprets `#[cachekit::test(...)]`'s arguments,
    /// collecting every error.
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> TestArgs {
        let mut out = TestArgs {
            multi_thread: false,
            worker_threads: None,
            start_paused: false,
            redis: false,
            redis_url: None,
            krate: None,
        };
        let mut seen = Seen(Vec::new());
        let mut given = Vec::new();
        for arg in parse_args::<TestOption>(tokens, errors) {
            match arg {
                Arg::Known { option, at, value } => {
                    if seen.first(option, at, errors) {
                        given.push((option, at));
                        out.set(option, &value, errors);
                    }
                }
                Arg::Unknown { name } => unknown::<TestOption>(&name, errors),
                Arg::Positional(value) => {
                    if syn::parse2::<kw::redis>(quote::ToTokens::to_token_stream(&value)).is_ok() {
                        out.redis = true;
                    } else {
                        errors.push(Code::TestPositional.spanned(
                            &value,
                            format!(
                                "expected `redis` or `option = value`; options are {}",
                                list(TestOption::NAMES)
                            ),
                        ));
                    }
                }
            }
        }
        for (option, at) in given {
            match option {
                TestOption::WorkerThreads if !out.multi_thread => {
                    errors.push(Code::WorkerThreadsWithoutMultiThread.error(
                        at,
                        "`worker_threads` requires the multi-thread runtime: \
                         `#[cachekit::test(flavor = \"multi_thread\", worker_threads = 2)]`",
                    ))
                }
                TestOption::StartPaused if out.multi_thread => {
                    errors.push(Code::StartPausedMultiThread.error(
                        at,
                        "`start_paused` requires the current-thread runtime (tokio pauses time there only): \
                         remove `flavor = \"multi_thread\"`",
                    ))
                }
                _ => {}
            }
        }
        out
    }

    fn set(&mut self, option: TestOption, value: &Expr, errors: &mut Errors) {
        let name = option.name();
        match option {
            TestOption::Flavor => {
                if let Some(s) = str_lit(value, name, errors) {
                    match s.value().as_str() {
                        "current_thread" => self.multi_thread = false,
                        "multi_thread" => self.multi_thread = true,
                        other => errors.push(Code::UnknownFlavor.error(
                            s.span(),
                            format!(
                                "unknown flavor `{other}`; the runtime flavors are `\"current_thread\"` \
                                 (the default) and `\"multi_thread\"`"
                            ),
                        )),
                    }
                }
            }
            TestOption::WorkerThreads => {
                self.worker_threads = match lit(value) {
                    Some(Lit::Int(i)) => i.base10_parse::<usize>().ok().filter(|n| *n > 0),
                    _ => None,
                };
                if self.worker_threads.is_none() {
                    errors.push(Code::BadWorkerThreads.spanned(
                        value,
                        "`worker_threads` expects a positive number of threads, e.g. `worker_threads = 2`",
                    ));
                }
            }
            TestOption::StartPaused => {
                self.start_paused = bool_lit(value, name, errors).unwrap_or(false)
            }
            TestOption::Redis => {
                self.redis = true;
                self.redis_url = Some(value.clone());
            }
            TestOption::Crate => self.krate = krate(value, errors),
        }
    }
}

/// The arguments of `assert_cached!(get_user(7))`: the call, and an
/// optional message (`format!` arguments).
pub(crate) struct AssertArgs {
    pub(crate) target: EntryTarget,
    pub(crate) message: Option<TokenStream>,
}

impl AssertArgs {
    /// Parses the call and the message; `None` (reported) if the first
    /// argument is not a call of a path.
    pub(crate) fn parse(
        tokens: TokenStream,
        macro_name: &str,
        errors: &mut Errors,
    ) -> Option<Self> {
        let parser = |input: ParseStream<'_>| {
            let call: Expr = input.parse()?;
            let message = if input.is_empty() {
                None
            } else {
                input.parse::<Token![,]>()?;
                let rest: TokenStream = input.parse()?;
                (!rest.is_empty()).then_some(rest)
            };
            Ok((call, message))
        };
        let (call, message) = match syn::parse::Parser::parse2(parser, tokens) {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.push(e);
                return None;
            }
        };
        match call {
            Expr::Call(call) if matches!(&*call.func, Expr::Path(_)) => {
                let Expr::Path(path) = (*call.func).clone() else {
                    unreachable!("matched")
                };
                Some(AssertArgs {
                    target: EntryTarget { call, path },
                    message,
                })
            }
            other => {
                errors.push(Code::AssertNotACall.spanned(
                    &other,
                    format!(
                        "{macro_name}! takes a call of a #[cached] function as it would be written, \
                         without `.await`: `{macro_name}!(get_user(7))`, `{macro_name}!(Repo::find(&repo, 7))`"
                    ),
                ));
                None
            }
        }
    }
}

/// What to point at in a malformed `#[cache_key(...)]`: its arguments, or
/// the whole attribute.
fn attr_arguments(attr: &syn::Attribute) -> TokenStream {
    match &attr.meta {
        syn::Meta::List(list) if !list.tokens.is_empty() => list.tokens.clone(),
        _ => quote::ToTokens::to_token_stream(attr),
    }
}

/// The template of `#[cache_key("...")]` on a struct.
pub(crate) fn cache_key_template(
    attr: &syn::Attribute,
    errors: &mut Errors,
) -> Option<TemplateLit> {
    match attr.parse_args::<LitStr>() {
        Ok(lit) => template(&lit, TemplateKind::Key, errors),
        Err(_) => {
            errors.push(Code::CacheKeyMalformed.spanned(
                attr_arguments(attr),
                "expected a key template: `#[cache_key(\"hero:{lang}:{id}\")]`",
            ));
            None
        }
    }
}

/// Whether a field's `#[cache_key(...)]` says `skip`.
pub(crate) fn field_skip(attr: &syn::Attribute, errors: &mut Errors) -> bool {
    match attr.parse_args::<kw::skip>() {
        Ok(_) => true,
        Err(_) => {
            errors.push(Code::CacheKeyFieldMalformed.spanned(
                attr_arguments(attr),
                "expected `#[cache_key(skip)]` on a field",
            ));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errors: Errors) -> Vec<String> {
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn collects_every_error() {
        let mut errors = Errors::default();
        CachedArgs::parse(
            quote::quote!(tll = 5, ttl = 1.5, ttl = 3, key = "a*"),
            &mut errors,
        );
        let message = messages(errors);
        assert_eq!(message.len(), 4, "{message:?}");
        assert!(message[0].contains("unknown option `tll`"));
        assert!(message[1].contains("expects seconds"));
        assert!(message[2].contains("duplicate option `ttl`"));
        assert!(message[3].contains("cannot contain `*`"));
    }

    #[test]
    fn durations_are_left_to_the_runtime() {
        let mut errors = Errors::default();
        let args = CachedArgs::parse(
            quote::quote!(ttl = "1.5s", stale = 30, fail_safe = "nonsense"),
            &mut errors,
        );
        assert!(
            errors.is_empty(),
            "the runtime parses them, at compile time"
        );
        assert_eq!(args.ttl.unwrap().text, "1.5s");
        assert_eq!(args.stale.unwrap().text, "30");
        assert_eq!(args.fail_safe.unwrap().text, "nonsense");
    }

    #[test]
    fn latency_and_scope_options() {
        let mut errors = Errors::default();
        let args = CachedArgs::parse(
            quote::quote!(
                ttl = 5,
                jitter = "10%",
                scope = "process",
                max_entries = 100,
                unless = |r: &Report| r.partial,
                ttl_from = ttl_of,
                fail_safe = "1h",
                fail_safe_throttle = "30s",
                soft_timeout = "100ms"
            ),
            &mut errors,
        );
        assert!(errors.is_empty());
        assert_eq!(args.jitter, Some(10));
        assert!(args.process);
        assert_eq!(args.max_entries, Some(100));
        assert!(args.unless.is_some() && args.ttl_from.is_some());
        assert_eq!(
            args.detached().map(|(o, _)| o),
            Some(CachedOption::SoftTimeout)
        );
        assert_eq!(
            CachedArgs::parse(quote::quote!(jitter = 25), &mut errors).jitter,
            Some(25)
        );
        assert!(
            CachedArgs::parse(
                quote::quote!(refresh = "on_miss", fail_safe = "1h"),
                &mut errors
            )
            .detached()
            .is_none(),
            "fail-safe alone keeps the computation in the caller's future"
        );
        assert!(errors.is_empty());

        let mut errors = Errors::default();
        CachedArgs::parse(
            quote::quote!(
                jitter = "101%",
                soft_timeout = "1s",
                fail_safe_throttle = "1s",
                max_entries = 5,
                scope = "nowhere"
            ),
            &mut errors,
        );
        let message = messages(errors);
        assert_eq!(message.len(), 5, "{message:?}");
        assert!(message[0].contains("from 0 to 100"));
        assert!(message[1].contains("unknown scope `nowhere`"));
        assert!(message[2].contains("would do nothing"));
        assert!(message[3].contains("only applies with `fail_safe"));
        assert!(message[4].contains("only applies with `scope = \"process\"`"));
    }

    #[test]
    fn test_options_follow_tokio() {
        let mut errors = Errors::default();
        let args = TestArgs::parse(
            quote::quote!(redis, flavor = "multi_thread", worker_threads = 2),
            &mut errors,
        );
        assert!(errors.is_empty());
        assert!(args.redis && args.multi_thread);
        assert_eq!(args.worker_threads, Some(2));
        let mut errors = Errors::default();
        TestArgs::parse(
            quote::quote!(worker_threads = 2, start_paused = true, mysql),
            &mut errors,
        );
        let message = messages(errors);
        assert_eq!(message.len(), 2, "{message:?}");
        assert!(message[0].contains("expected `redis`"));
        assert!(message[1].contains("requires the multi-thread runtime"));
    }

    #[test]
    fn every_option_is_known_by_its_keyword() {
        for name in CachedOption::NAMES {
            let tokens: TokenStream = format!("{name} = 1").parse().unwrap();
            let mut errors = Errors::default();
            CachedArgs::parse(tokens, &mut errors);
            assert!(
                messages(errors)
                    .iter()
                    .all(|m| !m.contains("unknown option")),
                "{name}"
            );
        }
        assert_eq!(CachedOption::Crate.name(), "crate");
        assert_eq!(InvalidateOption::Within.name(), "within");
    }

    #[test]
    fn typed_targets_are_calls_of_paths() {
        let mut errors = Errors::default();
        let args = InvalidateArgs::parse(
            quote::quote!(
                get_hero(id),
                Self::find(self, id),
                "hero:{id}",
                within = "heroes"
            ),
            &mut errors,
        );
        assert!(errors.is_empty());
        assert_eq!(args.entries.len(), 2);
        assert_eq!(args.keys.len(), 1);
        assert_eq!(args.within.unwrap().0.value(), "heroes");
        let mut errors = Errors::default();
        InvalidateArgs::parse(quote::quote!(self.find(id), 5), &mut errors);
        let message = messages(errors);
        assert!(
            message[0].contains("write `Self::find(self, id)`"),
            "{message:?}"
        );
        assert!(
            message[1].contains("expected a key template"),
            "{message:?}"
        );
    }

    #[test]
    fn an_option_name_as_a_target_is_a_target() {
        // A cached function may be called `key` or `lock`: without `=` it
        // is a target, not an option.
        let mut errors = Errors::default();
        let args = InvalidateArgs::parse(quote::quote!(lock(id), tags(7)), &mut errors);
        assert!(errors.is_empty());
        assert_eq!(args.entries.len(), 2);
    }
}
