//! The errors the macros report: each has a [`Code`], and each code one
//! construction site and one compile-fail case, `tests/ui/<case>.rs`, whose
//! `.stderr` shows its message. A test below keeps the three in step.
//!
//! Errors are collected and combined, so that one compile shows every
//! problem (serde's `Ctxt`).

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// A list of errors, combined into one `syn::Error`.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// `Ok` if nothing was reported.
    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Declares the codes, each with the name of its compile-fail case.
macro_rules! codes {
    ($($(#[doc = $doc:literal])* $code:ident => $case:literal,)*) => {
        /// What went wrong, one variant per error the macros construct.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Code {
            $($(#[doc = $doc])* $code,)*
        }

        impl Code {
            /// Every code.
            #[cfg(test)]
            pub(crate) const ALL: &[Code] = &[$(Code::$code,)*];

            /// The compile-fail case that shows this error:
            /// `tests/ui/<case>.rs` and its `.stderr`.
            #[cfg(test)]
            pub(crate) fn case(self) -> &'static str {
                match self {
                    $(Code::$code => $case,)*
                }
            }
        }
    };
}

codes! {
    // The arguments of `#[cached]` and `#[invalidate]`.
    UnknownOption => "unknown-option",
    DuplicateOption => "duplicate-option",
    PositionalInCached => "cached-positional-argument",
    ExpectsString => "key-not-a-string",
    ExpectsBool => "cache-none-not-a-bool",
    ExpectsArray => "tags-not-an-array",
    NotADuration => "ttl-not-a-duration",
    BadNamespace => "bad-namespace",
    BadCratePath => "bad-crate-path",
    BadBatchParam => "bad-batch-value",
    UnknownRefresh => "unknown-refresh",
    BadBeta => "non-positive-beta",
    UnknownCodec => "unknown-codec",
    BadCompress => "bad-compress",
    BetaWithoutEarly => "beta-without-early",
    LockTtlWithoutLock => "lock-ttl-without-lock",
    BadJitter => "jitter-over-100",
    UnknownScope => "unknown-scope",
    BadMaxEntries => "bad-max-entries",
    HookInString => "unless-in-a-string",
    SoftTimeoutAlone => "soft-timeout-alone",
    ThrottleWithoutFailSafe => "throttle-without-fail-safe",
    MaxEntriesWithoutProcess => "max-entries-without-process",
    ProcessScopeCombined => "process-scope-with-lock",
    BadTarget => "invalidate-bad-target",
    MethodCallTarget => "invalidate-method-call-target",
    // The arguments of `#[cachekit::test]` and `assert_cached!`.
    TestPositional => "test-positional-argument",
    UnknownFlavor => "test-unknown-flavor",
    BadWorkerThreads => "test-bad-worker-threads",
    WorkerThreadsWithoutMultiThread => "test-worker-threads-current-thread",
    StartPausedMultiThread => "test-start-paused-multi-thread",
    AssertNotACall => "assert-cached-not-a-call",
    // Key templates.
    TemplateSyntax => "unclosed-brace",
    ControlCharacter => "control-character-in-key",
    StarInKey => "star-in-cached-key",
    GlobInTag => "glob-in-tag",
    BadGlob => "invalidate-bad-glob",
    EmptyTemplate => "empty-key",
    UnseparatedPlaceholders => "placeholders-without-separator",
    // `#[cache_key(...)]`.
    CacheKeyMalformed => "cache-key-malformed",
    CacheKeyDuplicate => "cache-key-duplicate",
    CacheKeyFieldMalformed => "cache-key-field-malformed",
    // The annotated item.
    NotAFunction => "cached-on-struct",
    NotAsync => "invalidate-not-async",
    SyncWithoutProcess => "not-async",
    SyncCombined => "sync-with-stale",
    NotOwnable => "stale-unownable-parameters",
    BorrowedReceiver => "stale-borrowed-self",
    ImplTraitReturn => "impl-trait-return",
    UnknownPlaceholder => "unknown-placeholder",
    BatchUnknownParam => "batch-unknown-param",
    BatchKeyWithoutIds => "batch-key-without-ids",
    BatchWithoutKey => "batch-without-key",
    BatchCombined => "batch-with-lock",
    InvalidateNothing => "invalidate-nothing",
    WithinWithoutTemplates => "within-without-templates",
    DeriveNotStruct => "cache-key-enum",
    SkippedFieldUsed => "cache-key-skipped-field",
    SetterCollision => "cache-key-setter-collision",
    SetterReserved => "cache-key-reserved-setter",
}

impl Code {
    /// The error, at `span`.
    pub(crate) fn error(self, span: Span, message: impl Display) -> syn::Error {
        syn::Error::new(span, message)
    }

    /// The error, spanning `tokens`.
    pub(crate) fn spanned(self, tokens: impl ToTokens, message: impl Display) -> syn::Error {
        syn::Error::new_spanned(tokens, message)
    }
}

/// Keeps the codes, their construction sites in `src/` and the compile-fail
/// cases in `tests/ui/` in step:
///
/// * no error is constructed other than through a `Code` (a bare
///   `syn::Error::new`, `new_spanned`, `ParseStream::error` or
///   `compile_error!` outside this file fails the test);
/// * each code is constructed at exactly one site;
/// * each code's case exists, and its `.stderr` holds the longest literal
///   text of the site's message (the text between `{...}` placeholders), so
///   the snapshot shows that very error.
///
/// Errors that rustc reports for the generated code (a type that is not a
/// `KeyPart`, a typed target that names no cached function) have cases too,
/// but no code: they are not constructed here.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use proc_macro2::{Delimiter, TokenStream, TokenTree};

    use super::Code;

    fn manifest_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// The sources of the crate, tokenized, by file name.
    fn sources() -> Vec<(String, Vec<TokenTree>)> {
        let dir = manifest_dir().join("src");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("src/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                let tokens: TokenStream = text.parse().expect("the source tokenizes");
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                out.push((name, flatten(tokens)));
            }
        }
        out
    }

    /// Every token tree, groups included, in order (depth first).
    fn flatten(tokens: TokenStream) -> Vec<TokenTree> {
        let mut out = Vec::new();
        for tt in tokens {
            out.push(tt.clone());
            if let TokenTree::Group(g) = tt {
                out.extend(flatten(g.stream()));
            }
        }
        out
    }

    fn is_ident(tt: &TokenTree, name: &str) -> bool {
        matches!(tt, TokenTree::Ident(i) if i == name)
    }

    fn is_punct(tt: &TokenTree, c: char) -> bool {
        matches!(tt, TokenTree::Punct(p) if p.as_char() == c)
    }

    /// A site: `Code::Name.error(...)` or `Code::Name.spanned(...)`, with
    /// its arguments.
    fn sites(tokens: &[TokenTree]) -> Vec<(String, TokenStream)> {
        let mut out = Vec::new();
        for w in tokens.windows(7) {
            if is_ident(&w[0], "Code")
                && is_punct(&w[1], ':')
                && is_punct(&w[2], ':')
                && is_punct(&w[4], '.')
                && (is_ident(&w[5], "error") || is_ident(&w[5], "spanned"))
                && let (TokenTree::Ident(code), TokenTree::Group(args)) = (&w[3], &w[6])
                && args.delimiter() == Delimiter::Parenthesis
            {
                out.push((code.to_string(), args.stream()));
            }
        }
        out
    }

    /// The value of a string literal token (`"..."` or `r"..."`), if it is
    /// one.
    fn string_value(lit: &str) -> Option<String> {
        if let Some(raw) = lit.strip_prefix('r') {
            let hashes = raw.len() - raw.trim_start_matches('#').len();
            return Some(raw[hashes + 1..raw.len() - hashes - 1].to_owned());
        }
        let body = lit.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\n') => {
                    while chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                }
                Some(other) => out.push(other),
                None => {}
            }
        }
        Some(out)
    }

    /// The longest text between braces in the string literals of `args`:
    /// text that the message holds whatever its placeholders hold.
    fn longest_literal_text(args: TokenStream) -> String {
        flatten(args)
            .iter()
            .filter_map(|tt| match tt {
                TokenTree::Literal(l) => string_value(&l.to_string()),
                _ => None,
            })
            .flat_map(|s| s.split(['{', '}']).map(str::to_owned).collect::<Vec<_>>())
            .max_by_key(|s| s.trim().len())
            .unwrap_or_default()
    }

    #[test]
    fn errors_are_constructed_through_codes_only() {
        for (file, tokens) in sources() {
            if file == "errors.rs" {
                continue;
            }
            for (i, w) in tokens.windows(4).enumerate() {
                let bare_new = is_ident(&w[0], "Error")
                    && is_punct(&w[1], ':')
                    && is_punct(&w[2], ':')
                    && (is_ident(&w[3], "new") || is_ident(&w[3], "new_spanned"));
                // `.error(` of anything but a code: `input.error(...)`.
                let of_code = i >= 4 && is_ident(&tokens[i - 4], "Code");
                let parse_error = is_punct(&w[0], '.') && is_ident(&w[1], "error") && !of_code;
                let compile_error = is_ident(&w[0], "compile_error");
                assert!(
                    !(bare_new || parse_error || compile_error),
                    "{file}: an error constructed without a `Code` ({w:?}); use `Code::...`"
                );
            }
        }
    }

    #[test]
    fn every_code_has_one_site_and_a_case_showing_its_message() {
        let mut by_code: BTreeMap<String, Vec<(String, TokenStream)>> = BTreeMap::new();
        for (file, tokens) in sources() {
            for (code, args) in sites(&tokens) {
                by_code.entry(code).or_default().push((file.clone(), args));
            }
        }
        let ui = manifest_dir().join("../tests/ui");
        let mut problems = Vec::new();
        for code in Code::ALL {
            let name = format!("{code:?}");
            let case = code.case();
            match by_code.remove(&name).as_deref() {
                None | Some([]) => problems.push(format!("`Code::{name}` is never constructed")),
                Some([(_, args)]) => {
                    check_case(&ui, &name, case, args.clone(), &mut problems);
                }
                Some(more) => problems.push(format!(
                    "`Code::{name}` is constructed at {} sites ({}); give each its own code and case",
                    more.len(),
                    more.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(", ")
                )),
            }
        }
        assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    }

    fn check_case(
        ui: &Path,
        name: &str,
        case: &str,
        args: TokenStream,
        problems: &mut Vec<String>,
    ) {
        let rs = ui.join(format!("{case}.rs"));
        let stderr = ui.join(format!("{case}.stderr"));
        if !rs.exists() {
            problems.push(format!("`Code::{name}`: no case tests/ui/{case}.rs"));
            return;
        }
        let Ok(shown) = std::fs::read_to_string(&stderr) else {
            problems.push(format!("`Code::{name}`: no tests/ui/{case}.stderr"));
            return;
        };
        let text = longest_literal_text(args);
        if text.trim().len() < 12 {
            problems.push(format!(
                "`Code::{name}`: the message needs literal text at its site (found {text:?})"
            ));
        } else if !shown.contains(&text) {
            problems.push(format!(
                "`Code::{name}`: tests/ui/{case}.stderr does not show {text:?}"
            ));
        }
    }

    #[test]
    fn literal_text_is_found_between_placeholders() {
        let args: TokenStream = r#"span, format!("unknown option `{}`; expected one of {}", a, b)"#
            .parse()
            .unwrap();
        assert_eq!(longest_literal_text(args), "`; expected one of ");
        assert_eq!(
            string_value(
                r#""a \"b\" \
                c""#
            )
            .unwrap(),
            "a \"b\" c"
        );
        assert_eq!(string_value(r##"r#"x"y"#"##).unwrap(), "x\"y");
    }
}
