//! The public API, as a snapshot: every item `cachekit` exports (through the
//! runtime's `lib.rs` and its public modules, and the macros), with the
//! signatures of their public methods, fields and variants, compared with
//! `tests/public-api.txt`. The surface changes only on purpose: after a
//! deliberate change, regenerate the snapshot with
//! `CACHEKIT_BLESS=1 cargo test --test public_api` and review the diff.
//!
//! `#[doc(hidden)]` items (the macros' `__private` support) are left out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use quote::ToTokens;
use syn::{Item, UseTree, Visibility};

const SNAPSHOT: &str = "tests/public-api.txt";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The file of module `name` beside `dir` (`name.rs` or `name/mod.rs`).
fn module_file(dir: &Path, name: &str) -> PathBuf {
    let flat = dir.join(format!("{name}.rs"));
    if flat.exists() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    }
}

fn hidden(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("doc") && a.to_token_stream().to_string().contains("hidden"))
}

fn public(vis: &Visibility) -> bool {
    matches!(vis, Visibility::Public(_))
}

/// Tokens as one normalized line.
fn line(tokens: impl ToTokens) -> String {
    tokens
        .to_token_stream()
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lists the public items of `file` under `prefix`; follows public modules.
struct Lister {
    out: BTreeSet<String>,
}

impl Lister {
    fn module(&mut self, path: &Path, prefix: &str) {
        let file = parse(path);
        let dir = path.parent().unwrap().to_path_buf();
        let dir = if path.file_name().unwrap() == "mod.rs" || path.file_name().unwrap() == "lib.rs"
        {
            dir
        } else {
            dir.join(path.file_stem().unwrap())
        };
        for item in &file.items {
            self.item(item, &dir, prefix, &file);
        }
    }

    fn item(&mut self, item: &Item, dir: &Path, prefix: &str, file: &syn::File) {
        match item {
            Item::Mod(m) if public(&m.vis) && !hidden(&m.attrs) => {
                let name = m.ident.to_string();
                self.out.insert(format!("{prefix}{name}: mod"));
                self.module(&module_file(dir, &name), &format!("{prefix}{name}::"));
            }
            Item::Use(u) if public(&u.vis) && !hidden(&u.attrs) => {
                self.uses(&u.tree, dir, prefix, Vec::new());
            }
            Item::Fn(f) if public(&f.vis) && !hidden(&f.attrs) => {
                self.out.insert(format!("{prefix}{}", line(&f.sig)));
            }
            Item::Struct(s) if public(&s.vis) && !hidden(&s.attrs) => {
                let name = s.ident.to_string();
                self.out
                    .insert(format!("{prefix}{name}: struct{}", line(&s.generics)));
                for f in &s.fields {
                    if public(&f.vis) {
                        let field = f.ident.as_ref().map_or("_".into(), ToString::to_string);
                        self.out
                            .insert(format!("{prefix}{name}.{field}: {}", line(&f.ty)));
                    }
                }
                self.impls(&name, prefix, file);
            }
            Item::Enum(e) if public(&e.vis) && !hidden(&e.attrs) => {
                let name = e.ident.to_string();
                self.out
                    .insert(format!("{prefix}{name}: enum{}", line(&e.generics)));
                for v in &e.variants {
                    let fields: Vec<String> = v
                        .fields
                        .iter()
                        .map(|f| match &f.ident {
                            Some(id) => format!("{id}: {}", line(&f.ty)),
                            None => line(&f.ty),
                        })
                        .collect();
                    let fields = match &v.fields {
                        syn::Fields::Named(_) => format!(" {{ {} }}", fields.join(", ")),
                        syn::Fields::Unnamed(_) => format!("({})", fields.join(", ")),
                        syn::Fields::Unit => String::new(),
                    };
                    self.out
                        .insert(format!("{prefix}{name}::{}{fields}", v.ident));
                }
                self.impls(&name, prefix, file);
            }
            Item::Trait(t) if public(&t.vis) && !hidden(&t.attrs) => {
                let name = t.ident.to_string();
                self.out
                    .insert(format!("{prefix}{name}: trait{}", line(&t.generics)));
                for i in &t.items {
                    if let syn::TraitItem::Fn(f) = i {
                        self.out.insert(format!("{prefix}{name}::{}", line(&f.sig)));
                    }
                }
            }
            Item::Const(c) if public(&c.vis) && !hidden(&c.attrs) => {
                self.out
                    .insert(format!("{prefix}{}: const {}", c.ident, line(&c.ty)));
            }
            Item::Type(t) if public(&t.vis) && !hidden(&t.attrs) => {
                self.out
                    .insert(format!("{prefix}{}: type = {}", t.ident, line(&t.ty)));
            }
            _ => {}
        }
    }

    /// The public methods of inherent impls of `name` in `file`.
    fn impls(&mut self, name: &str, prefix: &str, file: &syn::File) {
        for item in &file.items {
            let Item::Impl(i) = item else { continue };
            if i.trait_.is_some() || line(&i.self_ty).split(' ').next() != Some(name) {
                continue;
            }
            for it in &i.items {
                if let syn::ImplItem::Fn(f) = it
                    && public(&f.vis)
                    && !hidden(&f.attrs)
                {
                    self.out.insert(format!("{prefix}{name}::{}", line(&f.sig)));
                }
            }
        }
    }

    /// Follows `pub use` into the module that defines each item.
    fn uses(&mut self, tree: &UseTree, dir: &Path, prefix: &str, mut path: Vec<String>) {
        match tree {
            UseTree::Path(p) => {
                path.push(p.ident.to_string());
                self.uses(&p.tree, dir, prefix, path);
            }
            UseTree::Group(g) => {
                for t in &g.items {
                    self.uses(t, dir, prefix, path.clone());
                }
            }
            UseTree::Name(n) => self.export(dir, prefix, &path, &n.ident.to_string(), None),
            UseTree::Rename(r) => self.export(
                dir,
                prefix,
                &path,
                &r.ident.to_string(),
                Some(r.rename.to_string()),
            ),
            UseTree::Glob(_) => {}
        }
    }

    fn export(
        &mut self,
        dir: &Path,
        prefix: &str,
        path: &[String],
        name: &str,
        rename: Option<String>,
    ) {
        let shown = rename.unwrap_or_else(|| name.to_owned());
        // A crate outside this one (`bytes::Bytes`), or a crate root.
        let first = path.first().map(String::as_str);
        let crate_relative = matches!(first, Some("crate") | Some("self") | Some("super"));
        let local = first.is_some_and(|f| module_file(dir, f).exists());
        if !crate_relative && !local {
            self.out.insert(format!(
                "{prefix}{shown}: re-export of {}::{name}",
                path.join("::")
            ));
            return;
        }
        let mut at = if first == Some("crate") {
            runtime_src()
        } else {
            dir.to_path_buf()
        };
        let rest = if crate_relative { &path[1..] } else { path };
        let mut file = None;
        for segment in rest {
            let f = module_file(&at, segment);
            at = if f.file_name().unwrap() == "mod.rs" {
                f.parent().unwrap().to_path_buf()
            } else {
                at.join(segment)
            };
            file = Some(f);
        }
        let Some(file) = file else { return };
        let parsed = parse(&file);
        let mut sub = Lister {
            out: BTreeSet::new(),
        };
        for item in &parsed.items {
            let named = match item {
                Item::Fn(f) => f.sig.ident == name,
                Item::Struct(s) => s.ident == name,
                Item::Enum(e) => e.ident == name,
                Item::Trait(t) => t.ident == name,
                Item::Const(c) => c.ident == name,
                Item::Type(t) => t.ident == name,
                _ => false,
            };
            if named {
                sub.item(item, &at, "", &parsed);
            }
        }
        for entry in sub.out {
            let entry = if shown == name {
                entry
            } else {
                entry.replacen(name, &shown, 1)
            };
            self.out.insert(format!("{prefix}{entry}"));
        }
    }
}

fn runtime_src() -> PathBuf {
    root().join("cache-runtime/src")
}

fn surface() -> String {
    let mut lister = Lister {
        out: BTreeSet::new(),
    };
    lister.module(&runtime_src().join("lib.rs"), "cachekit::");
    for m in [
        "CacheKey (derive)",
        "cached (attribute)",
        "invalidate (attribute)",
    ] {
        lister.out.insert(format!("cachekit::{m}"));
    }
    let mut text = String::new();
    for entry in lister.out {
        text.push_str(&entry);
        text.push('\n');
    }
    text
}

#[test]
fn the_public_api_changes_only_on_purpose() {
    let now = surface();
    let path = root().join(SNAPSHOT);
    if std::env::var_os("CACHEKIT_BLESS").is_some() {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    if now != before {
        let old: BTreeSet<&str> = before.lines().collect();
        let new: BTreeSet<&str> = now.lines().collect();
        let added: Vec<&&str> = new.difference(&old).collect();
        let removed: Vec<&&str> = old.difference(&new).collect();
        panic!(
            "the public API changed; if on purpose, run `CACHEKIT_BLESS=1 cargo test --test public_api`\nadded: {added:#?}\nremoved: {removed:#?}"
        );
    }
}
