//! Keys: how argument values become store keys, and keys become patterns.
//!
//! A key template such as `user:{id}` is literal text with placeholders. The
//! literal text is the programmer's; placeholder values are data, written by
//! [`KeyPart`] and escaped so that
//!
//! * rendering is injective: distinct values of a type never render the same,
//!   whatever characters they hold (the separator `:`, the escape `%`, ...)
//!   and however they nest (`[[1, 2]]` and `[[1], [2]]`, `[]` and `[""]`);
//! * a rendered value never holds a glob metacharacter (`* ? [ ] \`), a
//!   hash-tag brace (`{ }`), the generation marker `#`, whitespace or a
//!   control character. A value is therefore always literal in a pattern:
//!   `id = "*"` renders `%2A`, and an invalidation built from it can only
//!   match the key whose id is literally `*`.
//!
//! Escaping is percent-encoding of those bytes and of `%`, `:` and `,`
//! (`%` + two upper-case hex digits); every other character, unicode
//! included, is kept as is, so keys stay readable in `redis-cli`.
//!
//! # Values that hold values
//!
//! Lists, options and tuples write their structure with markers: `%` and a
//! character that is not an upper-case hex digit, so that no marker reads as
//! an escape, and none holds a glob character, a brace, `#`, `:` or `,`.
//!
//! ```text
//! value  := scalar | list | option | record
//! scalar := its text, escaped (may be empty)     7   x%3Ay   true
//! list   := "%(" "%)"                            slices, Vec, arrays, tuples
//!         | "%(" item ("," item)* "%)"
//! item   := "%_"                                 an item that renders empty
//!         | value                                nested
//! option := "%none"                              None
//!         | value                                Some, nested
//!         | "%s" value                           Some, when the value starts with `%n` or `%s`
//! record := a template (`#[derive(CacheKey)]`): at the top, its literal text
//!           as written; nested, that text escaped like data, `:` as `%.`
//! ```
//!
//! A value is *nested* when it sits in a list, a tuple or an option.
//! `vec![vec![1, 2]]` renders `%(%(1,2%)%)` and `vec![vec![1], vec![2]]`
//! `%(%(1%),%(2%)%)`; `vec![""]` renders `%(%_%)`, `(7, "a:b")` `%(7,a%3Ab%)`,
//! `Some(7)` `7` and `Some(None::<u8>)` `%s%none`. Scalars and records at the
//! top render as they always have: `user:{id}` with `id = 7` is `user:7`.
//!
//! Why this is injective, one type at a time: read from the left, the type
//! says what comes next, and the next characters leave one way to go on.
//!
//! * An item holds `,` and `%)` only inside brackets of its own, and is
//!   never empty (`%_`): the items of a list are found by matching brackets,
//!   and `%(%)` is only the empty list.
//! * An option is `%none`, or starts with `%s`, or starts with neither `%n`
//!   nor `%s`: its first two characters say which.
//! * Escaped data holds no raw `:`, `,` or marker, so a scalar ends where the
//!   text that follows it begins: a marker, `,`, or the literal text of its
//!   template, which has a `:` (raw at the top, `%.` nested) between any two
//!   placeholders (checked at compile time). The raw `:` of a key are thus
//!   exactly the literal ones of its top-level templates.
//!
//! The tests of this module parse renderings back to values, for arbitrary
//! nestings, and check that each has exactly one parse.
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
/// Opens a list (or tuple).
const OPEN: &str = "%(";
/// Closes a list (or tuple).
const CLOSE: &str = "%)";
/// Separates the items of a list.
const ITEM_SEPARATOR: &str = ",";
/// An item of a list that renders empty (`""` in a list, ...).
const EMPTY_ITEM: &str = "%_";
/// `None`.
const NONE: &str = "%none";
/// Before `Some(v)` when `v` itself starts with `%n` or `%s`.
const SOME: &str = "%s";
/// A `:` of a template's literal text, nested.
const NESTED_COLON: &str = "%.";

/// A value that can be part of a cache key.
///
/// Implemented for integers, `bool`, `char`, strings, `Uuid` (feature `uuid`),
/// `Option`, slices, arrays and `Vec`, tuples of up to 8 elements, references
/// and smart pointers to those, and every type that derives `CacheKey`.
/// Implementations write data through [`KeyWriter::text`] (escaped) and the
/// items of a collection through [`KeyWriter::list`], and must be injective:
/// two values that compare unequal must write different text.
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
    /// Whether what is written now sits in a list, tuple or option.
    nested: bool,
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
        KeyWriter { buf, nested: false }
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
    /// programmer: at the top of a key it is written as is. In a list,
    /// tuple or option (a derived key inside a `Vec`, ...) it is escaped like
    /// data, with `:` written `%.`: a nested value never holds a raw `:`
    /// or `,`, and its template's separators stay apart from its values'.
    #[inline]
    pub fn literal(&mut self, s: &str) {
        if self.nested {
            self.nested_literal(s);
        } else {
            self.buf.push_str(s);
        }
    }

    fn nested_literal(&mut self, s: &str) {
        for (i, piece) in s.split(':').enumerate() {
            if i > 0 {
                self.buf.push_str(NESTED_COLON);
            }
            self.text(piece);
        }
    }

    /// Appends a list: `%(`, the items separated by `,`, `%)`. For a
    /// collection type of your own: `out.list(self.iter())`. Each item is
    /// nested, and one that renders empty is written `%_`, so that the
    /// rendering stays injective however lists nest.
    pub fn list<I>(&mut self, items: I)
    where
        I: IntoIterator,
        I::Item: KeyPart,
    {
        self.buf.push_str(OPEN);
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.buf.push_str(ITEM_SEPARATOR);
            }
            self.item(&item);
        }
        self.buf.push_str(CLOSE);
    }

    /// Appends one item of a list or tuple.
    fn item<T: KeyPart + ?Sized>(&mut self, value: &T) {
        let start = self.buf.len();
        self.write_nested(value);
        if self.buf.len() == start {
            self.buf.push_str(EMPTY_ITEM);
        }
    }

    /// Appends a value that sits inside another.
    fn write_nested<T: KeyPart + ?Sized>(&mut self, value: &T) {
        let outer = std::mem::replace(&mut self.nested, true);
        value.write_key(self);
        self.nested = outer;
    }

    /// Appends text that never needs escaping: a marker, `true`, a uuid.
    fn raw(&mut self, s: &str) {
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
        out.raw(if *self { "true" } else { "false" });
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

/// `None` renders `%none`. `Some(v)` renders `v`, nested, with `%s` in
/// front when that rendering starts with `%n` or `%s` (`Some(None)`, ...):
/// the first two characters tell `None` and `Some` apart.
impl<T: KeyPart> KeyPart for Option<T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        match self {
            None => out.raw(NONE),
            Some(v) => {
                let start = out.buf.len();
                out.write_nested(v);
                let inner = &out.buf.as_bytes()[start..];
                if inner.starts_with(b"%n") || inner.starts_with(SOME.as_bytes()) {
                    out.buf.insert_str(start, SOME);
                }
            }
        }
    }
}

/// `%(`, the items separated by `,`, `%)`; see [`KeyWriter::list`].
impl<T: KeyPart> KeyPart for [T] {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.list(self);
    }
}

impl<T: KeyPart> KeyPart for Vec<T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.list(self);
    }
}

impl<T: KeyPart, const N: usize> KeyPart for [T; N] {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.list(self);
    }
}

/// A tuple renders as a list of its elements: `(7, "a")` is `%(7,a%)`.
macro_rules! tuple_key_part {
    ($first:ident $($rest:ident)*) => {
        impl<$first: KeyPart, $($rest: KeyPart),*> KeyPart for ($first, $($rest,)*) {
            #[allow(non_snake_case)]
            fn write_key(&self, out: &mut KeyWriter<'_>) {
                let ($first, $($rest,)*) = self;
                out.raw(OPEN);
                out.item($first);
                $(
                    out.raw(ITEM_SEPARATOR);
                    out.item($rest);
                )*
                out.raw(CLOSE);
            }
        }
    };
}
tuple_key_part!(A);
tuple_key_part!(A B);
tuple_key_part!(A B C);
tuple_key_part!(A B C D);
tuple_key_part!(A B C D E);
tuple_key_part!(A B C D E F);
tuple_key_part!(A B C D E F G);
tuple_key_part!(A B C D E F G H);

#[cfg(feature = "uuid")]
impl KeyPart for uuid::Uuid {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.raw(
            self.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        );
    }
}

/// Whether a rendered key is stored hashed: longer than [`MAX_KEY_LEN`], or
/// holding the marker `%h`, whatever its length: keys given at run time
/// (`Cache` keys, tags) are not escaped, and one could otherwise spell the
/// hashed form of another, longer key.
pub(crate) fn needs_hashing(rendered: &str) -> bool {
    // Most keys hold no `%` at all: a byte search (memchr) settles them; the
    // two-byte marker is looked for only in those that do.
    const _: () = assert!(HASH_MARKER.len() == 2);
    let bytes = rendered.as_bytes();
    rendered.len() > MAX_KEY_LEN
        || (bytes.contains(&b'%') && bytes.windows(2).any(|w| w == HASH_MARKER.as_bytes()))
}

/// Stores a rendered key as is, or hashed when [`needs_hashing`] says so.
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
pub(crate) fn validate_namespace(ns: &str) -> Result<()> {
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
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
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
pub(crate) fn validate_key(what: &str, key: &str) -> Result<()> {
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

    /// The namespace whose generation counter `key` is, if it is one.
    pub(crate) fn namespace_of_generation_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.prefix)?.strip_suffix("#gen")
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

    /// Writes like `#[derive(CacheKey)]` with `#[cache_key("q:{lang}:{id}")]`.
    struct Query(&'static str, u64);

    impl KeyPart for Query {
        fn write_key(&self, out: &mut KeyWriter<'_>) {
            out.literal("q:");
            out.part(self.0);
            out.literal(":");
            out.part(&self.1);
        }
    }

    #[test]
    fn nested_values_render_by_the_grammar() {
        assert_eq!(render(&vec![vec![1u64, 2]]), "%(%(1,2%)%)");
        assert_eq!(render(&vec![vec![1u64], vec![2]]), "%(%(1%),%(2%)%)");
        assert_eq!(render(&Vec::<u8>::new()), "%(%)");
        assert_eq!(render(&vec![""]), "%(%_%)");
        assert_eq!(render(&vec!["", ""]), "%(%_,%_%)");
        assert_eq!(render(&["a,b", "%(", "x:y"]), "%(a%2Cb,%25(,x%3Ay%)");
        assert_eq!(render(&(7u8, "a:b")), "%(7,a%3Ab%)");
        assert_eq!(
            render(&(1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, 8u8)),
            "%(1,2,3,4,5,6,7,8%)"
        );
        assert_eq!(render(&vec![None, Some("a")]), "%(%none,a%)");
        assert_eq!(render(&vec![Some("")]), "%(%_%)");
        assert_eq!(render(&Some(vec![None::<u8>])), "%(%none%)");
        assert_eq!(render(&Some(None::<u8>)), "%s%none");
        assert_eq!(render(&Some(Some(None::<u8>))), "%s%s%none");
        assert_eq!(render(&Box::new([true])), "%(true%)");
        assert_eq!(render(&std::borrow::Cow::Borrowed(&[1u8][..])), "%(1%)");
        // Scalars, options of scalars and records at the top render as they
        // always have.
        assert_eq!(render(&Some(7u8)), "7");
        assert_eq!(render(&None::<u8>), "%none");
        assert_eq!(render(&Query("e:n", 7)), "q:e%3An:7");
        // A record inside a list, tuple or option: its text escaped, `:` as `%.`.
        assert_eq!(render(&[Query("e:n", 7)]), "%(q%.e%3An%.7%)");
        assert_eq!(render(&Some(Query("en", 7))), "q%.en%.7");
        assert_eq!(render(&(Query("en", 7),)), "%(q%.en%.7%)");
    }

    #[test]
    fn nested_collections_never_collide() {
        // The reports of issue 12, and their neighbours.
        assert_ne!(
            render(&vec![vec![1u64, 2]]),
            render(&vec![vec![1u64], vec![2]])
        );
        assert_ne!(
            render(&Vec::<Vec<u64>>::new()),
            render(&vec![Vec::<u64>::new()])
        );
        assert_ne!(render(&vec![String::new()]), render(&Vec::<String>::new()));
        assert_ne!(
            render(&vec![None::<String>]),
            render(&Vec::<Option<String>>::new())
        );
        assert_ne!(render(&Some(Vec::<u64>::new())), render(&None::<Vec<u64>>));
        assert_ne!(
            render(&vec![Some(String::new())]),
            render(&vec![None::<String>])
        );
        assert_ne!(render(&vec![vec![""]]), render(&vec![Vec::<&str>::new()]));
        assert_ne!(render(&("a,b", "c")), render(&("a", "b,c")));
        assert_ne!(render(&[Query("a:b", 1)]), render(&[Query("a", 1)]));
    }

    /// Renderings parsed back to values, for every nesting of every shape
    /// that `KeyPart` composes: each rendering has exactly one parse, the
    /// value it came from. The parser accepts every string the grammar of
    /// the module's doc produces, so two values that rendered the same would
    /// both be parses of it: rendering is injective.
    mod parse_back {
        use std::collections::HashSet;

        use proptest::prelude::*;

        use super::super::*;

        /// A value of any shape; it writes through the real impls (`Vec`,
        /// `Option`, tuples, ...), so that its rendering is theirs.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        enum Value {
            Str(String),
            Int(u64),
            Bool(bool),
            List(Vec<Value>),
            Tuple(Vec<Value>),
            Opt(Option<Box<Value>>),
            /// A derived key: its template in `RECORDS`, and its fields.
            Record(usize, Vec<Value>),
        }

        /// The type of a `Value`.
        #[derive(Debug, Clone)]
        enum Shape {
            Str,
            Int,
            Bool,
            List(Box<Shape>),
            Tuple(Vec<Shape>),
            Opt(Box<Shape>),
            Record(usize, Vec<Shape>),
        }

        enum Segment {
            Literal(&'static str),
            Field,
        }
        use Segment::{Field, Literal};

        /// Templates as `#[derive(CacheKey)]` accepts them: any text but
        /// glob and control characters, and a `:` between two fields. The
        /// text spells markers and escapes on purpose.
        const RECORDS: &[&[Segment]] = &[
            &[Literal("q:"), Field, Literal(":"), Field],
            &[Field],
            &[Field, Literal(":")],
            &[
                Literal("50%,(x) {y}#"),
                Field,
                Literal("%.:%)_%s"),
                Field,
                Literal("%("),
            ],
            &[Literal("%none")],
            &[Literal("3A"), Field, Literal("2C:%none")],
        ];

        fn arity(record: usize) -> usize {
            RECORDS[record]
                .iter()
                .filter(|s| matches!(s, Field))
                .count()
        }

        impl KeyPart for Value {
            fn write_key(&self, out: &mut KeyWriter<'_>) {
                match self {
                    Value::Str(s) => s.write_key(out),
                    Value::Int(n) => n.write_key(out),
                    Value::Bool(b) => b.write_key(out),
                    Value::List(items) => items.write_key(out),
                    Value::Tuple(t) => match t.as_slice() {
                        [a] => (a,).write_key(out),
                        [a, b] => (a, b).write_key(out),
                        [a, b, c] => (a, b, c).write_key(out),
                        [a, b, c, d] => (a, b, c, d).write_key(out),
                        [a, b, c, d, e] => (a, b, c, d, e).write_key(out),
                        [a, b, c, d, e, f] => (a, b, c, d, e, f).write_key(out),
                        [a, b, c, d, e, f, g] => (a, b, c, d, e, f, g).write_key(out),
                        [a, b, c, d, e, f, g, h] => (a, b, c, d, e, f, g, h).write_key(out),
                        _ => unreachable!("tuples have 1 to 8 elements"),
                    },
                    Value::Opt(o) => o.write_key(out),
                    Value::Record(r, fields) => {
                        // What the derive generates: `literal` for the
                        // template's text, `part` for each placeholder.
                        let mut fields = fields.iter();
                        for segment in RECORDS[*r] {
                            match segment {
                                Literal(text) => out.literal(text),
                                Field => out.part(fields.next().expect("arity")),
                            }
                        }
                    }
                }
            }
        }

        // ------------------------------------------------------- the parser

        /// Bytes that data never holds raw (the module's doc).
        fn escaped_byte(b: u8) -> bool {
            b"%:,#*?[]\\{} ".contains(&b) || b < 0x20 || b == 0x7f
        }

        fn hex_digit(b: u8) -> Option<u8> {
            match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'A'..=b'F' => Some(b - b'A' + 10),
                _ => None,
            }
        }

        /// The escape at the start of `s`, if any: `%` and two upper-case
        /// hex digits, of a byte that must be escaped.
        fn escape_at(s: &[u8]) -> Option<u8> {
            let (&[b'%', hi, lo], _) = s.split_first_chunk::<3>()? else {
                return None;
            };
            let b = hex_digit(hi)? << 4 | hex_digit(lo)?;
            escaped_byte(b).then_some(b)
        }

        /// Data, escaped: what the parser expects of a literal's text.
        fn escaped(s: &str) -> String {
            let mut out = String::new();
            for c in s.chars() {
                if c.is_ascii() && escaped_byte(c as u8) {
                    out.push_str(&format!("%{:02X}", c as u8));
                } else {
                    out.push(c);
                }
            }
            out
        }

        /// Where escaped text starting at `at` can end: every boundary of
        /// its characters and escapes, up to the first byte that is neither.
        fn text_ends(s: &str, at: usize) -> Vec<usize> {
            let bytes = s.as_bytes();
            let mut ends = vec![at];
            let mut i = at;
            while i < s.len() {
                if escape_at(&bytes[i..]).is_some() {
                    i += 3;
                } else if escaped_byte(bytes[i]) {
                    break;
                } else {
                    i += s[i..].chars().next().expect("in bounds").len_utf8();
                }
                ends.push(i);
            }
            ends
        }

        fn unescape(s: &str) -> String {
            let mut out = Vec::new();
            let bytes = s.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                match escape_at(&bytes[i..]) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
            }
            String::from_utf8(out).expect("escapes are of ASCII bytes")
        }

        /// Every way to read a value of `shape` from `s[at..]`: the value and
        /// where it ends. `nested` when it sits in a list, tuple or option.
        fn parse(shape: &Shape, s: &str, at: usize, nested: bool) -> Vec<(Value, usize)> {
            let rest = &s[at..];
            match shape {
                Shape::Str => text_ends(s, at)
                    .into_iter()
                    .map(|end| (Value::Str(unescape(&s[at..end])), end))
                    .collect(),
                Shape::Int => {
                    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                    (1..=digits)
                        .filter(|&n| n == 1 || !rest.starts_with('0'))
                        .filter_map(|n| Some((Value::Int(rest[..n].parse().ok()?), at + n)))
                        .collect()
                }
                Shape::Bool => [(true, "true"), (false, "false")]
                    .into_iter()
                    .filter(|(_, text)| rest.starts_with(text))
                    .map(|(b, text)| (Value::Bool(b), at + text.len()))
                    .collect(),
                Shape::List(item) => {
                    if !rest.starts_with(OPEN) {
                        return Vec::new();
                    }
                    let mut found = Vec::new();
                    if rest[OPEN.len()..].starts_with(CLOSE) {
                        found.push((Value::List(Vec::new()), at + OPEN.len() + CLOSE.len()));
                    }
                    for (items, end) in items(&|_| Some(&**item), &|_| true, s, at + OPEN.len()) {
                        found.push((Value::List(items), end));
                    }
                    found
                }
                Shape::Tuple(shapes) => {
                    if !rest.starts_with(OPEN) {
                        return Vec::new();
                    }
                    items(
                        &|i| shapes.get(i),
                        &|n| n == shapes.len(),
                        s,
                        at + OPEN.len(),
                    )
                    .into_iter()
                    .map(|(items, end)| (Value::Tuple(items), end))
                    .collect()
                }
                Shape::Opt(inner) => parse_option(inner, s, at),
                Shape::Record(r, shapes) => parse_record(*r, shapes, s, at, nested),
            }
        }

        /// Every way to read an `Option` of `inner` from `s[at..]`.
        fn parse_option(inner: &Shape, s: &str, at: usize) -> Vec<(Value, usize)> {
            let rest = &s[at..];
            let marked = |from: usize, end: usize| {
                let r = &s[from..end];
                r.starts_with("%n") || r.starts_with(SOME)
            };
            let mut found = Vec::new();
            if rest.starts_with(NONE) {
                found.push((Value::Opt(None), at + NONE.len()));
            }
            if rest.starts_with(SOME) {
                let from = at + SOME.len();
                for (v, end) in parse(inner, s, from, true) {
                    if marked(from, end) {
                        found.push((Value::Opt(Some(Box::new(v))), end));
                    }
                }
            }
            for (v, end) in parse(inner, s, at, true) {
                if !marked(at, end) {
                    found.push((Value::Opt(Some(Box::new(v))), end));
                }
            }
            found
        }

        /// Every way to read derived record `r` (fields of `shapes`) from
        /// `s[at..]`.
        fn parse_record(
            r: usize,
            shapes: &[Shape],
            s: &str,
            at: usize,
            nested: bool,
        ) -> Vec<(Value, usize)> {
            let mut partial = vec![(Vec::new(), at)];
            for segment in RECORDS[r] {
                partial = match segment {
                    Literal(text) => {
                        let expected = if nested {
                            text.split(':')
                                .map(escaped)
                                .collect::<Vec<_>>()
                                .join(NESTED_COLON)
                        } else {
                            text.to_string()
                        };
                        partial
                            .into_iter()
                            .filter(|(_, pos)| s[*pos..].starts_with(&expected))
                            .map(|(fields, pos)| (fields, pos + expected.len()))
                            .collect()
                    }
                    Field => partial
                        .into_iter()
                        .flat_map(|(fields, pos)| {
                            let shape = &shapes[fields.len()];
                            parse(shape, s, pos, nested)
                                .into_iter()
                                .map(move |(v, end)| {
                                    let mut fields = fields.clone();
                                    fields.push(v);
                                    (fields, end)
                                })
                        })
                        .collect(),
                };
            }
            partial
                .into_iter()
                .map(|(fields, end)| (Value::Record(r, fields), end))
                .collect()
        }

        /// Every way to read one item of `shape` from `s[at..]`: `%_` for a
        /// value that renders empty, or the value's rendering.
        fn item(shape: &Shape, s: &str, at: usize) -> Vec<(Value, usize)> {
            let mut found = Vec::new();
            if s[at..].starts_with(EMPTY_ITEM) {
                for (v, _) in parse(shape, "", 0, true)
                    .into_iter()
                    .filter(|(_, end)| *end == 0)
                {
                    found.push((v, at + EMPTY_ITEM.len()));
                }
            }
            found.extend(
                parse(shape, s, at, true)
                    .into_iter()
                    .filter(|(_, end)| *end > at),
            );
            found
        }

        /// Every way to read `item ("," item)* "%)"` from `s[at..]`, the
        /// `i`th item of shape `shape_of(i)`, ending after `complete(n)`
        /// items.
        fn items<'s>(
            shape_of: &dyn Fn(usize) -> Option<&'s Shape>,
            complete: &dyn Fn(usize) -> bool,
            s: &str,
            at: usize,
        ) -> Vec<(Vec<Value>, usize)> {
            let mut found = Vec::new();
            let mut partial = vec![(Vec::new(), at)];
            while let Some((values, pos)) = partial.pop() {
                let Some(shape) = shape_of(values.len()) else {
                    continue;
                };
                for (v, end) in item(shape, s, pos) {
                    let mut values = values.clone();
                    values.push(v);
                    if s[end..].starts_with(CLOSE) && complete(values.len()) {
                        found.push((values.clone(), end + CLOSE.len()));
                    }
                    if s[end..].starts_with(ITEM_SEPARATOR) {
                        partial.push((values, end + ITEM_SEPARATOR.len()));
                    }
                }
            }
            found
        }

        /// Every value of `shape` whose rendering is all of `s`.
        fn parses(shape: &Shape, s: &str) -> HashSet<Value> {
            parse(shape, s, 0, false)
                .into_iter()
                .filter(|(_, end)| *end == s.len())
                .map(|(v, _)| v)
                .collect()
        }

        /// Asserts that a nested rendering holds only what the module's doc
        /// allows: no glob character, brace, `#`, `:`, ASCII whitespace or
        /// control; `%` only in an escape or a marker.
        fn assert_inert(r: &str) {
            assert!(
                !r.contains(|c: char| "*?[]\\{}#:".contains(c)
                    || c.is_ascii_whitespace()
                    || c.is_ascii_control()),
                "{r:?}"
            );
            for (i, _) in r.match_indices('%') {
                let after = &r[i..];
                assert!(
                    escape_at(after.as_bytes()).is_some()
                        || [OPEN, CLOSE, EMPTY_ITEM, NESTED_COLON, NONE, SOME]
                            .iter()
                            .any(|m| after.starts_with(m)),
                    "stray % in {r:?}"
                );
            }
            assert!(!needs_hashing(r) || r.len() > MAX_KEY_LEN, "{r:?}");
            assert_eq!(escape_glob(r), r);
        }

        // ---------------------------------------------------- the values

        /// Text made of markers, escapes, separators and anything else.
        fn text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                4 => prop::sample::select(&[
                    "", "%", "(", ")", "%(", "%)", "_", "%_", ".", "%.", ",", ":",
                    "n", "none", "%none", "s", "%s", "%h", "2C", "3A", "25", "a", " ", "é",
                ][..]).prop_map(str::to_owned),
                1 => any::<char>().prop_map(String::from),
            ];
            prop::collection::vec(piece, 0..4).prop_map(|v| v.concat())
        }

        fn shape() -> impl Strategy<Value = Shape> {
            let leaf = prop_oneof![Just(Shape::Str), Just(Shape::Int), Just(Shape::Bool)];
            leaf.prop_recursive(4, 24, 4, |inner| {
                prop_oneof![
                    inner.clone().prop_map(|s| Shape::List(Box::new(s))),
                    inner.clone().prop_map(|s| Shape::Opt(Box::new(s))),
                    prop::collection::vec(inner.clone(), 1..=8).prop_map(Shape::Tuple),
                    (0..RECORDS.len(), prop::collection::vec(inner, 2)).prop_map(
                        |(r, mut fields)| {
                            fields.truncate(arity(r));
                            Shape::Record(r, fields)
                        }
                    ),
                ]
            })
        }

        fn value(shape: &Shape) -> BoxedStrategy<Value> {
            match shape {
                Shape::Str => text().prop_map(Value::Str).boxed(),
                Shape::Int => prop_oneof![0..12u64, any::<u64>()]
                    .prop_map(Value::Int)
                    .boxed(),
                Shape::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
                Shape::List(item) => prop::collection::vec(value(item), 0..4)
                    .prop_map(Value::List)
                    .boxed(),
                Shape::Opt(inner) => prop::option::of(value(inner).prop_map(Box::new))
                    .prop_map(Value::Opt)
                    .boxed(),
                Shape::Tuple(shapes) => shapes
                    .iter()
                    .map(value)
                    .collect::<Vec<_>>()
                    .prop_map(Value::Tuple)
                    .boxed(),
                Shape::Record(r, shapes) => {
                    let r = *r;
                    shapes
                        .iter()
                        .map(value)
                        .collect::<Vec<_>>()
                        .prop_map(move |fields| Value::Record(r, fields))
                        .boxed()
                }
            }
        }

        /// Every value of `shape` over a few tricky strings and numbers,
        /// with lists of up to two items.
        fn every(shape: &Shape) -> Vec<Value> {
            fn product(shapes: &[Shape]) -> Vec<Vec<Value>> {
                shapes.iter().fold(vec![Vec::new()], |acc, shape| {
                    let options = every(shape);
                    acc.iter()
                        .flat_map(|prefix| {
                            options.iter().map(move |v| {
                                let mut next = prefix.clone();
                                next.push(v.clone());
                                next
                            })
                        })
                        .collect()
                })
            }
            match shape {
                Shape::Str => ["", ":", ",", "%none", "%.", "a"]
                    .iter()
                    .map(|s| Value::Str(s.to_string()))
                    .collect(),
                Shape::Int => [0, 1, 10].into_iter().map(Value::Int).collect(),
                Shape::Bool => vec![Value::Bool(false)],
                Shape::List(item) => {
                    let one = every(item);
                    let mut all = vec![Value::List(Vec::new())];
                    all.extend(one.iter().map(|a| Value::List(vec![a.clone()])));
                    for a in &one {
                        all.extend(one.iter().map(|b| Value::List(vec![a.clone(), b.clone()])));
                    }
                    all
                }
                Shape::Opt(inner) => std::iter::once(Value::Opt(None))
                    .chain(
                        every(inner)
                            .into_iter()
                            .map(|v| Value::Opt(Some(Box::new(v)))),
                    )
                    .collect(),
                Shape::Tuple(shapes) => product(shapes).into_iter().map(Value::Tuple).collect(),
                Shape::Record(r, shapes) => product(shapes)
                    .into_iter()
                    .map(|fields| Value::Record(*r, fields))
                    .collect(),
            }
        }

        #[test]
        fn every_small_value_of_tricky_shapes_renders_apart() {
            let list = |s| Shape::List(Box::new(s));
            let opt = |s| Shape::Opt(Box::new(s));
            let record = |r, fields| Shape::Record(r, fields);
            let shapes = [
                list(list(Shape::Int)),
                list(list(opt(Shape::Str))),
                opt(list(opt(Shape::Str))),
                opt(opt(opt(Shape::Str))),
                Shape::Tuple(vec![list(Shape::Str), opt(Shape::Str), Shape::Str]),
                // Options of records inside records: the `%.` of an inner
                // record that may be absent.
                record(
                    0,
                    vec![
                        opt(record(0, vec![opt(Shape::Str), Shape::Str])),
                        opt(Shape::Str),
                    ],
                ),
                list(record(
                    0,
                    vec![opt(record(2, vec![opt(Shape::Str)])), opt(Shape::Str)],
                )),
                list(record(3, vec![opt(Shape::Str), list(Shape::Int)])),
                opt(record(5, vec![opt(opt(Shape::Str))])),
            ];
            for shape in &shapes {
                let values = every(shape);
                let mut seen = HashSet::new();
                for v in &values {
                    let rendered = render(v);
                    assert!(
                        seen.insert(rendered.clone()),
                        "{shape:?}: {rendered:?} twice"
                    );
                    assert_eq!(
                        parses(shape, &rendered),
                        HashSet::from([v.clone()]),
                        "{rendered:?}"
                    );
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn renderings_parse_back_to_their_value_alone(
                (shape, values) in shape().prop_flat_map(|shape| {
                    let values = prop::collection::vec(value(&shape), 1..6);
                    (Just(shape), values)
                }),
            ) {
                for v in &values {
                    let rendered = render(v);
                    let found = parses(&shape, &rendered);
                    prop_assert_eq!(&found, &HashSet::from([v.clone()]), "{:?}", rendered);
                    // Nested, as an item and in an option.
                    let item = render(&[v]);
                    assert_inert(&item);
                    let list = Shape::List(Box::new(shape.clone()));
                    prop_assert_eq!(parses(&list, &item), HashSet::from([Value::List(vec![v.clone()])]));
                    let some = Value::Opt(Some(Box::new(v.clone())));
                    let option = Shape::Opt(Box::new(shape.clone()));
                    prop_assert_eq!(parses(&option, &render(&some)), HashSet::from([some]));
                }
            }
        }

        #[test]
        fn the_parser_reads_the_examples() {
            let list = |s| Shape::List(Box::new(s));
            let opt = |s| Shape::Opt(Box::new(s));
            assert_eq!(
                parses(&list(list(Shape::Int)), "%(%(1%),%(2%)%)"),
                HashSet::from([Value::List(vec![
                    Value::List(vec![Value::Int(1)]),
                    Value::List(vec![Value::Int(2)]),
                ])])
            );
            assert_eq!(
                parses(&list(opt(Shape::Str)), "%(%_,%none%)"),
                HashSet::from([Value::List(vec![
                    Value::Opt(Some(Box::new(Value::Str(String::new())))),
                    Value::Opt(None),
                ])])
            );
            // Not renderings: no parse.
            assert!(parses(&list(Shape::Str), "%(,%)").is_empty());
            assert!(parses(&list(Shape::Str), "%(a").is_empty());
            assert!(parses(&Shape::Str, "a%2Z").is_empty());
            assert!(parses(&opt(opt(Shape::Str)), "%none%none").is_empty());
        }
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
