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
    syn::custom_keyword!(batch);
    syn::custom_keyword!(companions);
    syn::custom_keyword!(before);
    syn::custom_keyword!(within);
    syn::custom_keyword!(skip);
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

const DURATION_FORMS: &str = "`\"500ms\"`, `\"90s\"`, `\"5m\"`, `\"1h\"`, `\"1d\"`";

/// A positive duration: seconds as an integer, or a string with a unit.
fn duration(value: &Expr, what: &str, errors: &mut Errors) -> Option<u64> {
    let ms =
        match lit(value) {
            Some(Lit::Int(i)) => i
                .base10_parse::<u64>()
                .ok()
                .and_then(|s| s.checked_mul(1_000)),
            Some(Lit::Str(s)) => {
                let ms = parse_duration_ms(&s.value());
                if ms.is_none() {
                    errors.push(Code::BadDuration.spanned(value, format!(
                    "`{}` is not a duration: write a number and a unit, as in {DURATION_FORMS}",
                    s.value()
                )));
                    return None;
                }
                ms
            }
            _ => None,
        };
    match ms {
        Some(0) => {
            errors.push(
                Code::ZeroDuration.spanned(value, format!("`{what}` must be greater than zero")),
            );
            None
        }
        Some(ms) => Some(ms),
        None => {
            errors.push(Code::NotADuration.spanned(
                value,
                format!(
                    "`{what}` expects seconds (`{what} = 5`) or a duration string: {DURATION_FORMS}"
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

/// `compress = true` (above 1 KiB), `false`, or a threshold in bytes.
fn compress(value: &Expr, errors: &mut Errors) -> Option<u32> {
    match lit(value) {
        Some(Lit::Bool(b)) => return b.value.then_some(1024),
        Some(Lit::Int(i)) => {
            if let Ok(n) = i.base10_parse::<u32>() {
                return Some(n);
            }
        }
        _ => {}
    }
    errors.push(Code::BadCompress.spanned(
        value,
        "`compress` expects `true` (above 1 KiB), `false`, or a size in bytes up to 4 GiB",
    ));
    None
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
    /// Where `beta` and `lock_ttl` were given, to report them if they do
    /// not apply.
    beta_at: Option<Span>,
    lock_ttl_at: Option<Span>,
}

impl Default for CachedArgs {
    fn default() -> Self {
        CachedArgs {
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
        }
    }
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
                        out.set(option, at, &value, errors);
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

    fn set(&mut self, option: CachedOption, at: Span, value: &Expr, errors: &mut Errors) {
        use CachedOption as O;
        let name = option.name();
        match option {
            O::Ttl => self.ttl_ms = duration(value, name, errors),
            O::Key => {
                self.key = str_lit(value, name, errors)
                    .and_then(|s| template(&s, TemplateKind::Key, errors))
            }
            O::Namespace => self.namespace = namespace(value, name, errors),
            O::CacheNone => self.cache_none = bool_lit(value, name, errors).unwrap_or(true),
            O::Tags => self.tags = templates(value, name, TemplateKind::Tag, errors),
            O::Lock => self.lock = bool_lit(value, name, errors).unwrap_or(false),
            O::LockTtl => {
                self.lock_ttl_at = Some(at);
                self.lock_ttl_ms = duration(value, name, errors);
            }
            O::Refresh => self.refresh_early = refresh(value, errors).unwrap_or(false),
            O::Beta => {
                self.beta_at = Some(at);
                self.beta = beta(value, errors);
            }
            O::Stale => self.stale_ms = duration(value, name, errors),
            O::Local => self.local = bool_lit(value, name, errors).unwrap_or(false),
            O::Codec => self.codec = codec(value, errors).unwrap_or_default(),
            O::Compress => self.compress = compress(value, errors),
            O::Batch => self.batch = batch_param(value, errors),
            O::Companions => self.companions = bool_lit(value, name, errors).unwrap_or(true),
            O::Crate => self.krate = krate(value, errors),
        }
    }

    /// Options that only apply with another one, reported at the option.
    fn check_combinations(&self, errors: &mut Errors) {
        if let Some(at) = self.beta_at
            && !self.refresh_early
        {
            errors.push(
                Code::BetaWithoutEarly.error(at, "`beta` only applies with `refresh = \"early\"`"),
            );
        }
        if let Some(at) = self.lock_ttl_at
            && !self.lock
        {
            errors.push(
                Code::LockTtlWithoutLock.error(at, "`lock_ttl` only applies with `lock = true`"),
            );
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
            quote::quote!(tll = 5, ttl = 0, ttl = 3, key = "a*"),
            &mut errors,
        );
        let message = messages(errors);
        assert_eq!(message.len(), 4, "{message:?}");
        assert!(message[0].contains("unknown option `tll`"));
        assert!(message[1].contains("greater than zero"));
        assert!(message[2].contains("duplicate option `ttl`"));
        assert!(message[3].contains("cannot contain `*`"));
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
