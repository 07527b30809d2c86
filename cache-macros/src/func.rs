//! The annotated function: parsed, failed soft, and described (its
//! parameters, where it lives, the signature its companions copy).

use proc_macro2::{TokenStream, TokenTree};
use quote::quote;
use syn::punctuated::Punctuated;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Token, Type};

use crate::errors::Code;

/// Emits the user's item unchanged beside the error, so that the rest of
/// their crate still type-checks (tokio, thiserror's `fallback.rs`).
pub(crate) fn fail_soft(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#item #error)
}

/// The function under `#[attr]`; anything else comes back unchanged, with
/// the error.
pub(crate) fn parse_fn(item: &TokenStream, attr: &str) -> Result<ItemFn, TokenStream> {
    syn::parse2(item.clone()).map_err(|e| {
        fail_soft(
            item.clone(),
            Code::NotAFunction.error(
                e.span(),
                format!("#[{attr}] applies to an `async fn`, not to this item"),
            ),
        )
    })
}

/// The parameters of a function, as far as keys and companions are
/// concerned.
pub(crate) struct Params {
    /// `self` is available (any receiver form).
    pub(crate) receiver: bool,
    /// The function is an associated function: it has a receiver, or its
    /// signature names `Self`. Its companions are associated functions too,
    /// reached through `Self::`.
    pub(crate) associated: bool,
    /// Names bound by the parameters, in order.
    pub(crate) names: Vec<Ident>,
    /// Names of the parameters whose type holds an `impl Trait`: their
    /// concrete type is part of a default key.
    pub(crate) impl_trait: Vec<Ident>,
    /// Whether every parameter is a plain identifier (companions can pass
    /// them on).
    pub(crate) simple: bool,
}

impl Params {
    pub(crate) fn of(func: &ItemFn) -> Params {
        let sig = &func.sig;
        let mut params = Params {
            receiver: false,
            associated: mentions_self(quote!(#sig)),
            names: Vec::new(),
            impl_trait: Vec::new(),
            simple: true,
        };
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(_) => {
                    params.receiver = true;
                    params.associated = true;
                }
                FnArg::Typed(t) => {
                    match &*t.pat {
                        Pat::Ident(p) if p.subpat.is_none() => {
                            if contains_impl_trait(&t.ty) {
                                params.impl_trait.push(p.ident.clone());
                            }
                        }
                        _ => params.simple = false,
                    }
                    collect_bindings(&t.pat, &mut params.names);
                }
            }
        }
        params
    }

    pub(crate) fn knows(&self, name: &str) -> bool {
        (name == "self" && self.receiver) || self.names.iter().any(|n| n == name)
    }

    pub(crate) fn describe(&self) -> String {
        let mut all: Vec<String> = Vec::new();
        if self.receiver {
            all.push("`self`".into());
        }
        all.extend(self.names.iter().map(|n| format!("`{n}`")));
        if all.is_empty() {
            "it has no parameters".into()
        } else {
            format!("its parameters are {}", all.join(", "))
        }
    }
}

fn collect_bindings(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            out.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                collect_bindings(sub, out);
            }
        }
        Pat::Tuple(t) => t.elems.iter().for_each(|p| collect_bindings(p, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| collect_bindings(p, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| collect_bindings(&f.pat, out)),
        Pat::Reference(r) => collect_bindings(&r.pat, out),
        Pat::Type(t) => collect_bindings(&t.pat, out),
        Pat::Paren(p) => collect_bindings(&p.pat, out),
        _ => {}
    }
}

/// Whether `tokens` hold the identifier `name`, at any depth.
fn holds_ident(tokens: TokenStream, name: &str) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == name,
        TokenTree::Group(g) => holds_ident(g.stream(), name),
        _ => false,
    })
}

fn mentions_self(tokens: TokenStream) -> bool {
    holds_ident(tokens, "Self")
}

pub(crate) fn contains_impl_trait(ty: &Type) -> bool {
    holds_ident(quote!(#ty), "impl")
}

/// How a parameter reaches a computation that runs on its own task (a
/// refresh in the background, the rest of a computation past its soft
/// timeout): such a computation must own what it uses.
pub(crate) enum Owning<'f> {
    /// Moved in as it is: a value, `self`, `self: Arc<Self>`, a
    /// `&'static` reference.
    Move,
    /// `x: &T`: `<T as ToOwned>::to_owned(x)` is moved in, and the body
    /// sees `x: &T` borrowed from it, unchanged.
    Borrowed {
        ident: &'f Ident,
        mutability: Option<Token![mut]>,
        referent: &'f Type,
    },
}

/// Why a parameter cannot be owned by a detached computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unownable {
    /// `&self`, `self: &Self`, `self: Pin<&mut Self>`.
    BorrowedSelf,
    /// `x: &mut T`.
    MutRef,
    /// `x: impl Trait`, `x: &impl Trait`.
    ImplTrait,
    /// `x: Cow<'a, str>`, `x: &Row<'a>`.
    Lifetime,
    /// `(a, b): (u8, u8)`, `_: u8`, `ref x: T`.
    Pattern,
}

impl Unownable {
    /// What to write instead.
    pub(crate) fn advice(self) -> &'static str {
        match self {
            Unownable::BorrowedSelf => "",
            Unownable::MutRef => {
                "a `&mut` borrow cannot be copied to another task: take the value, or `&T`"
            }
            Unownable::ImplTrait => {
                "`impl Trait` has no owned form to copy: use a type parameter \
                 (`T: Trait + Clone + Send + 'static`) or a concrete type"
            }
            Unownable::Lifetime => {
                "a type that borrows cannot move to another task: take an owned type \
                 (`String` rather than `Cow<'a, str>`, a value rather than a view)"
            }
            Unownable::Pattern => "write a plain name (`q: Query`) and destructure it in the body",
        }
    }
}

/// How `input` reaches a detached computation.
pub(crate) fn owning(input: &FnArg) -> Result<Owning<'_>, Unownable> {
    match input {
        FnArg::Receiver(r) => {
            let ty = quote!(#r);
            if r.reference.is_some() || holds_punct(ty, '&') {
                Err(Unownable::BorrowedSelf)
            } else {
                Ok(Owning::Move)
            }
        }
        FnArg::Typed(t) => {
            let Pat::Ident(binding) = &*t.pat else {
                return Err(Unownable::Pattern);
            };
            if binding.by_ref.is_some() || binding.subpat.is_some() {
                return Err(Unownable::Pattern);
            }
            match ungroup(&t.ty) {
                Type::Reference(r) => {
                    if r.mutability.is_some() {
                        return Err(Unownable::MutRef);
                    }
                    ownable(&r.elem)?;
                    if r.lifetime.as_ref().is_some_and(|l| l.ident == "static") {
                        return Ok(Owning::Move);
                    }
                    Ok(Owning::Borrowed {
                        ident: &binding.ident,
                        mutability: binding.mutability,
                        referent: &r.elem,
                    })
                }
                ty => ownable(ty).map(|()| Owning::Move),
            }
        }
    }
}

/// Whether a type can be owned: no `impl Trait`, no borrowed lifetime.
fn ownable(ty: &Type) -> Result<(), Unownable> {
    if contains_impl_trait(ty) {
        return Err(Unownable::ImplTrait);
    }
    if holds_borrowed_lifetime(quote!(#ty)) {
        return Err(Unownable::Lifetime);
    }
    Ok(())
}

fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => ungroup(&g.elem),
        Type::Paren(p) => ungroup(&p.elem),
        ty => ty,
    }
}

/// Whether `tokens` hold a lifetime other than `'static`, at any depth.
fn holds_borrowed_lifetime(tokens: TokenStream) -> bool {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    tokens.iter().enumerate().any(|(i, tt)| match tt {
        TokenTree::Punct(p) if p.as_char() == '\'' => {
            !matches!(tokens.get(i + 1), Some(TokenTree::Ident(id)) if id == "static")
        }
        TokenTree::Group(g) => holds_borrowed_lifetime(g.stream()),
        _ => false,
    })
}

/// Whether `tokens` hold the punctuation `c`, at any depth.
fn holds_punct(tokens: TokenStream, c: char) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Punct(p) => p.as_char() == c,
        TokenTree::Group(g) => holds_punct(g.stream(), c),
        _ => false,
    })
}

/// The parameters as the companions declare them: the user's, without the
/// `mut` of by-value bindings. A companion never mutates its arguments, and
/// the user's `mut` (which the body needs) would draw `unused_mut` there.
pub(crate) fn inputs_without_mut(func: &ItemFn) -> Punctuated<FnArg, Token![,]> {
    let mut inputs = func.sig.inputs.clone();
    for input in &mut inputs {
        match input {
            FnArg::Receiver(r) if r.reference.is_none() => r.mutability = None,
            FnArg::Receiver(_) => {}
            FnArg::Typed(t) => strip_mut(&mut t.pat),
        }
    }
    inputs
}

fn strip_mut(pat: &mut Pat) {
    match pat {
        Pat::Ident(p) => {
            if p.by_ref.is_none() {
                p.mutability = None;
            }
            if let Some((_, sub)) = &mut p.subpat {
                strip_mut(sub);
            }
        }
        Pat::Tuple(t) => t.elems.iter_mut().for_each(strip_mut),
        Pat::TupleStruct(t) => t.elems.iter_mut().for_each(strip_mut),
        Pat::Struct(s) => s.fields.iter_mut().for_each(|f| strip_mut(&mut f.pat)),
        Pat::Reference(r) => strip_mut(&mut r.pat),
        Pat::Type(t) => strip_mut(&mut t.pat),
        Pat::Paren(p) => strip_mut(&mut p.pat),
        _ => {}
    }
}

/// The declared return type (`()` if none).
pub(crate) fn return_type(func: &ItemFn) -> TokenStream {
    match &func.sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    }
}

/// The path generated code reaches the runtime by: `::cachekit::__private`,
/// or `crate = "..."`'s.
pub(crate) fn runtime(krate: Option<&syn::Path>) -> TokenStream {
    match krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::cachekit::__private),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companions_drop_the_mut_of_by_value_bindings_only() {
        let func: ItemFn = syn::parse_quote! {
            async fn f(mut self, mut a: u32, (mut b, ref mut c): (u32, u32), d: &mut u32) {}
        };
        let inputs = inputs_without_mut(&func);
        assert_eq!(
            quote!(#inputs).to_string(),
            quote!(self, a: u32, (b, ref mut c): (u32, u32), d: &mut u32).to_string()
        );
    }

    #[test]
    fn parameters_are_described() {
        let func: ItemFn = syn::parse_quote! {
            async fn f(&self, id: u64, key: impl Into<String>, (a, b): (u8, u8)) -> Option<Self> {}
        };
        let params = Params::of(&func);
        assert!(params.receiver && params.associated && !params.simple);
        assert_eq!(params.names.len(), 4);
        assert_eq!(
            params.impl_trait,
            vec![Ident::new("key", proc_macro2::Span::call_site())]
        );
        let free: ItemFn = syn::parse_quote!(
            async fn g(id: u64) -> u64 {}
        );
        assert!(!Params::of(&free).associated);
        let constructor: ItemFn = syn::parse_quote!(
            async fn load(id: u64) -> Option<Self> {}
        );
        assert!(Params::of(&constructor).associated);
    }
}
