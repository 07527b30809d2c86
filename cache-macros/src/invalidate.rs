//! Expansion of `#[invalidate]`: the targets are rendered from the
//! arguments before the body runs (the body may consume them), then handed
//! to `__private::invalidate_targets` after a success, or before the body
//! with `before = true`.
//!
//! A typed target, `get_hero(id)`, becomes a call of the hidden entry that
//! `#[cached]` generates beside `get_hero`: `__cachekit_entry_get_hero(id)`,
//! the path's last segment renamed, spanned at the user's tokens so that
//! rustc reports a wrong name or wrong arguments there.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Expr, ItemFn};

use crate::attr::{EntryTarget, InvalidateArgs};
use crate::check;
use crate::errors::Errors;
use crate::func::{Params, fail_soft, parse_fn, return_type, runtime};
use crate::render::render;

/// `#[invalidate(...)]`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match parse_fn(&item, "invalidate") {
        Ok(f) => f,
        Err(out) => return out,
    };
    let mut errors = Errors::default();
    let args = InvalidateArgs::parse(args, &mut errors);
    let params = Params::of(&func);
    check::function(&func, "invalidate", false, &mut errors);
    check::invalidate(&func, &args, &params, &mut errors);
    if let Err(e) = errors.finish() {
        return fail_soft(item, e);
    }
    let p = runtime(args.krate.as_ref());
    let targets = targets(&func, &args, &p);
    let ret = return_type(&func);
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &func;
    let body = if args.before {
        quote! {
            #targets
            #p::invalidate_targets(&__CACHEKIT_COUNTERS, __cachekit_targets).await;
            async move #block.await
        }
    } else {
        quote! {
            #targets
            let __cachekit_ret: #ret = async move #block.await;
            let __cachekit_ok = {
                #[allow(unused_imports)]
                use #p::{PlainKind as _, ResultKind as _, Succeeded as _};
                (&#p::Kind::<#ret>::NEW).output().succeeded(&__cachekit_ret)
            };
            if __cachekit_ok {
                #p::invalidate_targets(&__CACHEKIT_COUNTERS, __cachekit_targets).await;
            }
            __cachekit_ret
        }
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #body
        }
    }
}

/// The function's counters and `__cachekit_targets`, rendered now.
fn targets(func: &ItemFn, args: &InvalidateArgs, p: &TokenStream) -> TokenStream {
    let name = func.sig.ident.to_string();
    let keys = args.keys.iter().map(|t| render(t, p));
    let tags = args.tags.iter().map(|t| render(t, p));
    let namespaces = &args.namespaces;
    let entries = entries(&args.entries, p);
    let within = match &args.within {
        Some((ns, _)) => quote!(::core::option::Option::Some(#ns)),
        None => quote!(::core::option::Option::None),
    };
    quote! {
        static __CACHEKIT_COUNTERS: #p::Counters =
            #p::Counters::new(#p::Scope::Function, ::core::concat!(::core::module_path!(), "::", #name));
        let __cachekit_targets = #p::Targets {
            keys: #p::Vec::from([#(#keys),*]),
            tags: #p::Vec::from([#(#tags),*]),
            namespaces: &[#(#namespaces),*],
            entries: #entries,
            within: #within,
        };
    }
}

/// The entries of the typed targets, as a `Vec<Entry>` expression.
fn entries(targets: &[EntryTarget], p: &TokenStream) -> TokenStream {
    if targets.is_empty() {
        return quote!(#p::Vec::new());
    }
    let mut fallbacks = Vec::new();
    let mut calls = Vec::new();
    for (n, target) in targets.iter().enumerate() {
        let (call, fallback) = entry_call(target, n, p);
        calls.push(call);
        fallbacks.extend(fallback);
    }
    quote!({
        #(#fallbacks)*
        #p::Vec::from([#(#calls),*])
    })
}

/// The call of the target's entry: `get_hero(id)` becomes
/// `__cachekit_entry_get_hero(id)`, `Self::find(self, id)` becomes
/// `Self::__cachekit_entry_find(self, id)`.
///
/// A path through a type (`Self::find`, `Repo::find`) also gets a fallback:
/// a trait method of that name for every type, whose bound fails with a
/// message of ours. An inherent associated function wins over it, so it
/// only answers when the type has no entry of that name: the method is not
/// `#[cached]`, or has `companions = false` (as in a trait impl).
pub(crate) fn entry_call(
    target: &EntryTarget,
    n: usize,
    p: &TokenStream,
) -> (TokenStream, Option<TokenStream>) {
    let mut path = target.path.clone();
    let last = path.path.segments.last_mut().expect("a path has a segment");
    let entry = format_ident!("__cachekit_entry_{}", last.ident, span = last.ident.span());
    last.ident = entry.clone();
    let mut call = target.call.clone();
    *call.func = Expr::Path(path);
    let through_a_type = target.path.qself.is_some() || target.path.path.segments.len() > 1;
    if !through_a_type {
        return (quote!(#call), None);
    }
    let shown = quote::ToTokens::to_token_stream(&target.path)
        .to_string()
        .replace(' ', "");
    let message = format!(
        "`{shown}` has no entry for #[invalidate] to name: it is not a #[cached] function with companions"
    );
    let note = "a typed target calls the entry that #[cached] generates beside the function, with its \
                companions; `companions = false` (which trait impls require) generates none. Name such \
                an entry by its key template instead: `#[invalidate(\"...\", within = \"<namespace>\")]`";
    let no_entry = format_ident!("__CachekitNoEntry{}", n);
    let fallback = format_ident!("__CachekitEntryFallback{}", n);
    let args: Vec<_> = (0..target.call.args.len())
        .map(|i| format_ident!("__A{}", i))
        .collect();
    let fallback = quote! {
        #[diagnostic::on_unimplemented(message = #message, label = "no #[cached] entry here", note = #note)]
        #[allow(dead_code)]
        trait #no_entry {}
        #[allow(dead_code, non_snake_case)]
        trait #fallback {
            fn #entry<#(#args),*>(#(_: #args),*) -> #p::Entry
            where
                Self: #no_entry,
            {
                ::core::unreachable!()
            }
        }
        impl<T: ?::core::marker::Sized> #fallback for T {}
    };
    (quote!(#call), Some(fallback))
}
