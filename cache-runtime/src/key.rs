//! Keys: how argument values become store keys, and keys become patterns.
//!
//! A key template such as `user:{id}` is literal text with placeholders. The
//! literal text is the programmer's; placeholder values are data, written by
//! [`KeyPart`] and escaped so that
//!
//! * rendering is injective: distinct values of a type never render the same,
//!   whatever characters they hold (the separator `:`, the escape `%`, ...);
//! * a rendered value never holds a glob metacharacter (`* ? [ ] \`), a
//!   hash-tag brace (`{ }`), the generation marker `#`, whitespace or a
//!   control character. A value is therefore always literal in a pattern:
//!   `id = "*"` renders `%2A`, and an invalidation built from it can only
//!   match the key whose id is literally `*`.
//!
//! Escaping is percent-encoding of those bytes (`%` + two upper-case hex
//! digits); every other character, unicode included, is kept as is, so keys
//! stay readable in `redis-cli`.
//!
//! # Layout on the store
//!
//! ```text
//! {prefix:}key                      a key outside any namespace
//! {prefix:}ns:key                   a key in namespace `ns` (generation 0)
//! {prefix:}ns#G:key                 the same after G namespace invalidations
//! {prefix:}ns#gen                   the generation counter of `ns`
//! {prefix:}ns#idx:name:value        a secondary index of `ns` (sorted set of keys)
//! {prefix:}#tag:tag                 a tag (sorted set of the keys it marks)
//! {prefix:}#lock:name               a lease of `cachekit::lock`
//! {prefix:}#events                  the pub/sub channel of invalidation messages
//! ```
//!
//! Namespaces and the prefix are restricted to letters, digits and `_ . -`
//! (the prefix also `:` and `/`), so none of these forms can be produced by
//! another. A rendered key longer than [`MAX_KEY_LEN`] bytes is stored as its
//! first [`HASHED_KEY_HEAD`] bytes, `%h`, and the SHA-256 of the whole
//! rendered key; `%h` cannot come from an escaped value, and a key given at
//! run time that holds `%h` is hashed too, so hashed keys never meet others.

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Rendered keys longer than this (in bytes) are stored hashed.
pub const MAX_KEY_LEN: usize = 512;
/// Bytes of a long key kept readable in front of its hash.
pub const HASHED_KEY_HEAD: usize = 128;
/// What separates the readable head of a hashed key from its hash.
const HASH_MARKER: &str = "%h";

/// A value that can be part of a cache key.
///
/// Implemented for integers, `bool`, `char`, strings, `Uuid` (feature `uuid`),
/// `Option`, slices and `Vec`, references and smart pointers to those, and
/// every type that derives `CacheKey`. Implementations write data through
/// [`KeyWriter::text`] (escaped) and must be injective: two values that
/// compare unequal must write different text.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used in a cache key",
    label = "this value is part of the key, so its type must implement `cachekit::KeyPart`",
    note = "implement `cachekit::KeyPart` for `{Self}`, or derive it with `#[derive(cachekit::CacheKey)]`; integers, strings, bools, chars and uuids already implement it"
)]
pub trait KeyPart {
    /// Writes this value into a key.
    fn write_key(&self, out: &mut KeyWriter<'_>);
}

/// A type that is a cache key of its own, usually through
/// `#[derive(CacheKey)]`.
pub trait CacheKey: KeyPart {
    /// The pattern builder of this key type (`{Name}Pattern`).
    type Pattern;

    /// The key, rendered.
    fn cache_key(&self) -> String {
        render(self)
    }

    /// A pattern builder whose fields all match anything until set.
    fn pattern() -> Self::Pattern;
}

/// Writes key text: literal template text as is, values escaped.
pub struct KeyWriter<'a> {
    buf: &'a mut String,
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether a byte of a value must be escaped in a key.
const fn must_escape(b: u8) -> bool {
    matches!(
        b,
        b'%' | b':' | b',' | b'#' | b'*' | b'?' | b'[' | b']' | b'\\' | b'{' | b'}' | b' ' | 0
            ..=0x1f | 0x7f
    )
}

static ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = must_escape(i as u8);
        i += 1;
    }
    table
};

impl<'a> KeyWriter<'a> {
    /// A writer appending to `buf`.
    pub fn new(buf: &'a mut String) -> Self {
        KeyWriter { buf }
    }

    /// Appends data, escaped.
    #[inline]
    pub fn text(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if ESCAPE[b as usize] {
                self.buf.push_str(&s[start..i]);
                self.buf.push('%');
                self.buf.push(HEX[(b >> 4) as usize] as char);
                self.buf.push(HEX[(b & 0xf) as usize] as char);
                start = i + 1;
            }
        }
        self.buf.push_str(&s[start..]);
    }

    /// Appends data given by `Display`, escaped.
    pub fn display(&mut self, value: impl fmt::Display) {
        struct Escaping<'w, 'a>(&'w mut KeyWriter<'a>);
        impl fmt::Write for Escaping<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.text(s);
                Ok(())
            }
        }
        let _ = write!(Escaping(self), "{value}");
    }

    /// Appends an integer (never needs escaping).
    #[inline]
    pub fn integer(&mut self, n: impl itoa::Integer) {
        self.buf.push_str(itoa::Buffer::new().format(n));
    }

    /// Appends literal text of a template. Only for text written by the
    /// programmer: it is not escaped.
    #[inline]
    pub fn literal(&mut self, s: &str) {
        self.buf.push_str(s);
    }

    /// Appends a value.
    #[inline]
    pub fn part<T: KeyPart + ?Sized>(&mut self, value: &T) {
        value.write_key(self);
    }

    /// What has been written so far.
    pub fn as_str(&self) -> &str {
        self.buf
    }
}

/// Renders one value as it appears in a key (escaped).
pub fn render<T: KeyPart + ?Sized>(value: &T) -> String {
    let mut out = String::new();
    value.write_key(&mut KeyWriter::new(&mut out));
    out
}

/// Escapes a string as a key value (the inverse of nothing: keys are not
/// parsed back). `escape("a:b") == "a%3Ab"`.
pub fn escape(s: &str) -> String {
    render(s)
}

/// Escapes the glob metacharacters of `s` (`* ? [ ] \`) so that, in a
/// pattern, it matches only itself.
pub fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

macro_rules! integer_key_part {
    ($($t:ty)*) => {$(
        impl KeyPart for $t {
            #[inline]
            fn write_key(&self, out: &mut KeyWriter<'_>) {
                out.integer(*self);
            }
        }
    )*};
}
integer_key_part!(u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize);

macro_rules! nonzero_key_part {
    ($($t:ty)*) => {$(
        impl KeyPart for $t {
            #[inline]
            fn write_key(&self, out: &mut KeyWriter<'_>) {
                out.integer(self.get());
            }
        }
    )*};
}
nonzero_key_part!(
    std::num::NonZeroU8 std::num::NonZeroU16 std::num::NonZeroU32 std::num::NonZeroU64
    std::num::NonZeroUsize std::num::NonZeroI32 std::num::NonZeroI64
);

impl KeyPart for bool {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.literal(if *self { "true" } else { "false" });
    }
}

impl KeyPart for char {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.text(self.encode_utf8(&mut [0; 4]));
    }
}

impl KeyPart for str {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.text(self);
    }
}

impl KeyPart for String {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.text(self);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &mut T {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for Box<T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for std::sync::Arc<T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for std::rc::Rc<T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ToOwned + ?Sized> KeyPart for std::borrow::Cow<'_, T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

/// `None` renders `%none`. `Some(v)` renders as `v`, unless `v`'s rendering
/// starts with a `%` marker of its own (a nested `Option`), which gets `%s`
/// in front: the rendering stays injective.
impl<T: KeyPart> KeyPart for Option<T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        match self {
            None => out.literal("%none"),
            Some(v) => {
                let inner = render(v);
                if inner.starts_with("%n") || inner.starts_with("%s") || inner.starts_with("%e") {
                    out.literal("%s");
                }
                out.literal(&inner);
            }
        }
    }
}

/// Elements joined by `,` (escaped inside values); the empty slice renders
/// `%empty`.
impl<T: KeyPart> KeyPart for [T] {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        if self.is_empty() {
            out.literal("%empty");
        }
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.literal(",");
            }
            v.write_key(out);
        }
    }
}

impl<T: KeyPart> KeyPart for Vec<T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        self.as_slice().write_key(out);
    }
}

impl<T: KeyPart, const N: usize> KeyPart for [T; N] {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        self.as_slice().write_key(out);
    }
}

#[cfg(feature = "uuid")]
impl KeyPart for uuid::Uuid {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.literal(
            self.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        );
    }
}

/// Stores a rendered key as is, or hashed when longer than [`MAX_KEY_LEN`].
/// A key that holds the marker `%h` is hashed too, whatever its length:
/// keys given at run time (`Cache` keys, tags) are not escaped, and one
/// could otherwise spell the hashed form of another, longer key.
/// Whether a rendered key is stored hashed: too long, or spelling the
/// hashed-key marker.
pub(crate) fn needs_hashing(rendered: &str) -> bool {
    // Most keys hold no `%` at all: a byte search (memchr) settles them; the
    // two-byte marker is looked for only in those that do.
    const _: () = assert!(HASH_MARKER.len() == 2);
    let bytes = rendered.as_bytes();
    rendered.len() > MAX_KEY_LEN
        || (bytes.contains(&b'%') && bytes.windows(2).any(|w| w == HASH_MARKER.as_bytes()))
}

pub(crate) fn push_bounded(out: &mut String, rendered: &str) {
    if !needs_hashing(rendered) {
        out.push_str(rendered);
        return;
    }
    let mut head = HASHED_KEY_HEAD;
    while !rendered.is_char_boundary(head) {
        head -= 1;
    }
    out.push_str(&rendered[..head]);
    out.push_str(HASH_MARKER);
    let digest = Sha256::digest(rendered.as_bytes());
    for b in digest {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
}

/// Checks a namespace: 1 to 64 letters, digits, `_`, `.` or `-`.
pub fn validate_namespace(ns: &str) -> Result<()> {
    if ns.is_empty() {
        return Err(Error::invalid("the namespace is empty"));
    }
    if ns.len() > 64 {
        return Err(Error::invalid(format!(
            "namespace `{}...` is longer than 64 bytes",
            &ns[..ns.char_indices().nth(16).map_or(ns.len(), |(i, _)| i)]
        )));
    }
    if let Some(c) = ns
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(Error::invalid(format!(
            "namespace `{}` contains {c:?}; a namespace holds only letters, digits, `_`, `.` and `-`",
            ns.escape_debug()
        )));
    }
    Ok(())
}

/// Checks a key prefix: letters, digits and `_ . - : /`.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let p = prefix.trim();
    if p.is_empty() || p.len() > 128 {
        return Err(Error::invalid("the key prefix must be 1 to 128 bytes"));
    }
    if let Some(c) = p
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '/')))
    {
        return Err(Error::invalid(format!(
            "key prefix `{}` contains {c:?}; use letters, digits, `_`, `.`, `-`, `:` and `/`",
            p.escape_debug()
        )));
    }
    Ok(())
}

/// Checks a key (or tag, or index name/value) given at run time: not empty,
/// no control characters.
pub fn validate_key(what: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid(format!("the {what} is empty")));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(format!(
            "the {what} `{}` contains the control character {c:?}",
            truncate_for_message(key).escape_debug()
        )));
    }
    Ok(())
}

fn truncate_for_message(s: &str) -> &str {
    match s.char_indices().nth(48) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Where things live on the store, given the configured prefix.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    /// `""` or `"prefix:"`.
    prefix: String,
}

impl Layout {
    pub(crate) fn new(prefix: Option<&str>) -> Self {
        let prefix = match prefix.map(|p| p.trim().trim_end_matches(':')) {
            Some(p) if !p.is_empty() => format!("{p}:"),
            _ => String::new(),
        };
        Layout { prefix }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The store key of `key` in the namespace whose segment is `ns_segment`
    /// (`ns` or `ns#G`), or outside any namespace.
    pub(crate) fn data_key(&self, ns_segment: Option<&str>, key: &str) -> String {
        let mut out = String::with_capacity(
            self.prefix.len()
                + ns_segment.map_or(0, |n| n.len() + 1)
                + key.len().min(MAX_KEY_LEN + 1),
        );
        out.push_str(&self.prefix);
        if let Some(ns) = ns_segment {
            out.push_str(ns);
            out.push(':');
        }
        push_bounded(&mut out, key);
        out
    }

    /// A pattern over store keys: the prefix (glob-escaped) and `pattern`.
    pub(crate) fn pattern(&self, ns_segment: Option<&str>, pattern: &str) -> String {
        let mut out = escape_glob(&self.prefix);
        if let Some(ns) = ns_segment {
            out.push_str(ns);
            out.push(':');
        }
        out.push_str(pattern);
        out
    }

    pub(crate) fn generation_key(&self, ns: &str) -> String {
        format!("{}{ns}#gen", self.prefix)
    }

    /// The segment of `ns` at generation `generation`.
    pub(crate) fn ns_segment(ns: &str, generation: u64) -> String {
        if generation == 0 {
            ns.to_owned()
        } else {
            format!("{ns}#{generation}")
        }
    }

    /// Patterns covering every data key and index of `ns`, all generations,
    /// but not its generation counter.
    pub(crate) fn namespace_patterns(&self, ns: &str) -> [String; 3] {
        let p = escape_glob(&self.prefix);
        [
            format!("{p}{ns}:*"),
            format!("{p}{ns}#[0-9]*"),
            format!("{p}{ns}#idx:*"),
        ]
    }

    pub(crate) fn index_key(&self, ns: &str, name: &str, value: &str) -> String {
        let mut rendered = String::new();
        let mut w = KeyWriter::new(&mut rendered);
        w.text(name);
        w.literal(":");
        w.text(value);
        let mut out = format!("{}{ns}#idx:", self.prefix);
        push_bounded(&mut out, &rendered);
        out
    }

    pub(crate) fn tag_key(&self, tag: &str) -> String {
        let mut out = format!("{}#tag:", self.prefix);
        push_bounded(&mut out, tag);
        out
    }

    pub(crate) fn lock_key(&self, name: &str) -> String {
        let mut out = format!("{}#lock:", self.prefix);
        push_bounded(&mut out, name);
        out
    }

    pub(crate) fn events_channel(&self) -> String {
        format!("{}#events", self.prefix)
    }
}

/// Whether `key` matches the Redis glob `pattern` (`*`, `?`, `[abc]`,
/// `[^a-z]`, `\x`), with the semantics of Redis' `stringmatchlen`.
pub fn glob_match(pattern: &str, key: &str) -> bool {
    // Redis matches nothing against an empty key (its loop never runs), but
    // `SCAN` and `KEYS` take the pattern `*` as "every key" without matching.
    if key.is_empty() {
        return pattern.is_empty() || pattern == "*";
    }
    let p = pattern.as_bytes();
    let s = key.as_bytes();
    let (mut pi, mut si) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, string index).
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    while pi < p.len() && p[pi] == b'*' {
                        pi += 1;
                    }
                    if pi == p.len() {
                        return true;
                    }
                    star = Some((pi, si));
                    continue;
                }
                b'?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' => {
                    if let Some((true, next)) = match_class(p, pi, s[si]) {
                        pi = next;
                        si += 1;
                        continue;
                    }
                }
                b'\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == s[si] {
                        pi += 2;
                        si += 1;
                        continue;
                    }
                }
                c => {
                    if c == s[si] {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Matches `c` against the class starting at `p[start] == b'['`. Returns
/// whether it matched and the index after the class. Like Redis, an
/// unterminated class runs to the end of the pattern.
fn match_class(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = i < p.len() && p[i] == b'^';
    if negate {
        i += 1;
    }
    let mut matched = false;
    loop {
        if i >= p.len() {
            // Redis treats the end of the pattern as the end of the class.
            return Some((matched != negate, p.len()));
        }
        match p[i] {
            b'\\' if i + 1 < p.len() => {
                if p[i + 1] == c {
                    matched = true;
                }
                i += 2;
            }
            b']' => return Some((matched != negate, i + 1)),
            lo if i + 2 < p.len() && p[i + 1] == b'-' => {
                // Redis compares range ends as C `char`s, signed on the
                // platforms it runs on: bytes past 0x7F sort below ASCII
                // (found by the property test against a real redis-server).
                let (lo, hi, c) = (lo as i8, p[i + 2] as i8, c as i8);
                let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                if (lo..=hi).contains(&c) {
                    matched = true;
                }
                i += 3;
            }
            x => {
                if x == c {
                    matched = true;
                }
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_injective() {
        assert_eq!(render("x:y"), "x%3Ay");
        assert_eq!(render("*"), "%2A");
        assert_eq!(render("50%"), "50%25");
        assert_eq!(render("a b\n{c}#"), "a%20b%0A%7Bc%7D%23");
        assert_eq!(render("héllo"), "héllo");
        assert_eq!(render(&7u64), "7");
        assert_eq!(render(&-7i32), "-7");
        assert_ne!(render(&None::<String>), render(&Some("%none".to_owned())));
        assert_ne!(render(&None::<Option<u8>>), render(&Some(None::<u8>)));
        assert_ne!(render(&Vec::<String>::new()), render(&vec![String::new()]));
        assert_ne!(
            render(&vec!["a,b".to_owned()]),
            render(&vec!["a".to_owned(), "b".to_owned()])
        );
        // The pair example of the design: separators in values cannot collide.
        let pair = |a: &str, b: &str| format!("{}:{}", render(a), render(b));
        assert_ne!(pair("x:y", "z"), pair("x", "y:z"));
    }

    #[test]
    fn long_keys_are_hashed() {
        let long = "a".repeat(10_000);
        let mut out = String::new();
        push_bounded(&mut out, &long);
        assert!(out.len() < 200 + 64);
        assert!(out.contains("%h"));
        let mut other = String::new();
        push_bounded(&mut other, &format!("{long}b"));
        assert_ne!(out, other);
        let mut short = String::new();
        push_bounded(&mut short, "user:7");
        assert_eq!(short, "user:7");
        // A short key spelling the hashed form of a long one is hashed too.
        let mut posing = String::new();
        push_bounded(&mut posing, &out);
        assert_ne!(posing, out);
        assert!(posing.len() <= MAX_KEY_LEN);
        // A multi-byte character across the cut is not split.
        let mut uni = String::new();
        push_bounded(&mut uni, &"é".repeat(400));
        assert!(uni.is_char_boundary(uni.find("%h").unwrap()));
    }

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob_match("user:*", "user:7"));
        assert!(glob_match("user:*", "user:"));
        assert!(!glob_match("user:*", "users:7"));
        assert!(glob_match("*:7", "user:7"));
        assert!(glob_match("u?er:[0-9]", "user:7"));
        assert!(!glob_match("u?er:[^0-9]", "user:7"));
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        assert!(glob_match("*a*b*c", "xxaxxbxxc"));
        assert!(!glob_match("*a*b*c", "xxaxxbxx"));
        assert!(glob_match("[a-c]*", "b"));
        assert!(glob_match("[c-a]*", "b"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        // An empty key, as `SCAN MATCH` sees it (found by the property test
        // against a real redis-server).
        assert!(glob_match("*", ""));
        assert!(glob_match("", ""));
        assert!(!glob_match("**", ""));
        assert!(!glob_match("?", ""));
        // Ranges over bytes past 0x7F compare as signed, as in Redis: `é` is
        // 0xC3 0xA9, so `[é-z]` holds the range 0xA9..z, i.e. -87..122.
        assert!(glob_match("[^é-[\\]]", "c"));
        assert!(glob_match("[é-z]x", "ax"));
    }

    #[test]
    fn layout() {
        let l = Layout::new(Some("app:"));
        assert_eq!(l.data_key(None, "user:7"), "app:user:7");
        assert_eq!(l.data_key(Some("heroes"), "user:7"), "app:heroes:user:7");
        assert_eq!(
            l.data_key(Some(&Layout::ns_segment("heroes", 3)), "user:7"),
            "app:heroes#3:user:7"
        );
        assert_eq!(Layout::new(None).data_key(None, "user:7"), "user:7");
        let [data, gens, idx] = Layout::new(None).namespace_patterns("sign");
        assert!(glob_match(&data, "sign:a") && !glob_match(&data, "signup:a"));
        assert!(glob_match(&gens, "sign#2:a") && !glob_match(&gens, "sign#gen"));
        assert!(glob_match(&idx, "sign#idx:user:alice"));
    }

    #[test]
    fn validation() {
        assert!(validate_namespace("signup").is_ok());
        assert!(validate_namespace("").is_err());
        assert!(validate_namespace("a:b").is_err());
        assert!(validate_namespace("a*").is_err());
        assert!(validate_key("key", "").is_err());
        assert!(validate_key("key", "a\nb").is_err());
        assert!(validate_key("key", "a b:*").is_ok());
    }
}
