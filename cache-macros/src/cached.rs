//! Expansion of `#[cached]`: the function, its call site, its companions
//! and its hidden entry.
//!
//! The user's signature is kept token for token; the body becomes the
//! computation handed to one runtime function, with the function's `Site`
//! (its policy and counters, a `static` built by `const` calls, durations
//! parsed by the runtime at compile time), the key, the tags, how the
//! return type is stored (its `Output`) and the hooks on the value:
//!
//! * `__private::cached` for an `async fn`, `cached_process` with
//!   `scope = "process"`, `cached_sync` for a plain `fn` (process scope
//!   only);
//! * the computation is `Inline(async move { body })`, which borrows the
//!   arguments, unless it may run on its own task (`stale`,
//!   `refresh = "early"`, `soft_timeout`): then it is
//!   `Owned(move || { ..copies.. async move { body } })`, made from owned
//!   copies of the arguments only when the engine needs it, so that a hit
//!   copies nothing.
//!
//! Beside the function, unless `companions = false`:
//!
//! * `__cachekit_site_{name}()`: the one `static Site` of the function,
//!   shared by the function and everything below;
//! * `__cachekit_entry_{name}(<params>) -> Entry`: the site and the key
//!   for these arguments, which typed `#[invalidate(name(...))]` targets
//!   call;
//! * `{name}_key`, `{name}_refresh`, `{name}_invalidate`: the companions
//!   (a sync function has no `{name}_refresh`: a forced refresh is a scope
//!   of the async runtime).
//!
//! For an associated function they are associated functions, reached
//! through `Self::`.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, Pat, PatType, ReturnType, Type};

use crate::attr::{CachedArgs, CodecArg, Compress, respan};
use crate::check;
use crate::errors::Errors;
use crate::func::{
    Owning, Params, fail_soft, inputs_without_mut, owning, parse_fn, return_type, runtime,
};
use crate::render::{render, render_batch, render_default};

/// `#[cached(...)]`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match parse_fn(&item, "cached") {
        Ok(f) => f,
        Err(out) => return out,
    };
    let mut errors = Errors::default();
    let args = CachedArgs::parse(args, &mut errors);
    let params = Params::of(&func);
    check::function(&func, "cached", true, &mut errors);
    check::sync(&func, &args, &mut errors);
    check::owned(&func, &args, &mut errors);
    check::cached(&func, &args, &params, &mut errors);
    let batch = args
        .batch
        .as_ref()
        .and_then(|ids| check::batch(&func, &args, ids, &mut errors));
    if let Err(e) = errors.finish() {
        return fail_soft(item, e);
    }
    match batch {
        Some(param) => expand_batch(&func, &args, param),
        None => expand_cached(&func, &args, &params),
    }
}

/// The names generated beside a function `name`.
struct Names {
    site: Ident,
    entry: Ident,
}

impl Names {
    fn of(func: &ItemFn) -> Names {
        let name = &func.sig.ident;
        Names {
            site: format_ident!("__cachekit_site_{}", name),
            entry: format_ident!("__cachekit_entry_{}", name),
        }
    }
}

/// The function's `static` call site, named `__CACHEKIT_SITE`. Defaults
/// (the lease's length, `beta`, the compression threshold, the number of
/// process-scope entries) are the runtime's: an option given without its
/// value passes `None`.
fn site_static(args: &CachedArgs, func: &ItemFn, p: &TokenStream) -> TokenStream {
    let name = func.sig.ident.to_string();
    let some = |t: TokenStream| quote!(::core::option::Option::Some(#t));
    let none = quote!(::core::option::Option::None);
    let mut options = Vec::new();
    for (method, d) in [
        ("ttl", &args.ttl),
        ("stale", &args.stale),
        ("fail_safe", &args.fail_safe),
        ("fail_safe_throttle", &args.fail_safe_throttle),
        ("soft_timeout", &args.soft_timeout),
        ("hard_timeout", &args.hard_timeout),
        ("cache_err", &args.cache_err),
    ] {
        if let Some(d) = d {
            let method = Ident::new(method, proc_macro2::Span::call_site());
            let d = d.expr(p);
            options.push(quote!(.#method(#d)));
        }
    }
    if let Some(ns) = &args.namespace {
        options.push(quote!(.namespace(#ns)));
    }
    if args.skip_none {
        options.push(quote!(.cache_none(false)));
    }
    if args.lock {
        let ttl = args
            .lock_ttl
            .as_ref()
            .map_or(none.clone(), |d| some(d.expr(p)));
        options.push(quote!(.lock(#ttl)));
    }
    if args.refresh_early {
        let beta = args.beta.map_or(none.clone(), |b| some(quote!(#b)));
        options.push(quote!(.refresh_early_beta(#beta)));
    }
    if args.local {
        options.push(quote!(.local(true)));
    }
    if args.codec == CodecArg::MsgPack {
        options.push(quote!(.codec(#p::Codec::MsgPack)));
    }
    match args.compress {
        Compress::Off => {}
        Compress::Default => options.push(quote!(.compress(#none))),
        Compress::Above(n) => options.push(quote!(.compress(::core::option::Option::Some(#n)))),
    }
    if let Some(percent) = args.jitter {
        options.push(quote!(.jitter(#percent)));
    }
    if args.process {
        let max = args.max_entries.map_or(none.clone(), |n| some(quote!(#n)));
        options.push(quote!(.process_scope(#max)));
    }
    quote! {
        static __CACHEKIT_SITE: #p::Site =
            #p::Site::new(::core::concat!(::core::module_path!(), "::", #name)) #(#options)*;
    }
}

/// Where an expression reaching the site is: in the cached function, or in
/// something generated beside it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum In {
    Function,
    Beside,
}

/// An expression for the function's `&'static Site`: its own static, or
/// (with companions) the one behind `__cachekit_site_{name}()`.
fn site_expr(
    func: &ItemFn,
    args: &CachedArgs,
    params: &Params,
    p: &TokenStream,
    at: In,
) -> TokenStream {
    let site = Names::of(func).site;
    if args.no_companions {
        let site_static = site_static(args, func, p);
        quote!({ #site_static &__CACHEKIT_SITE })
    } else if params.associated {
        outside_trait_impls(func, &site, p, at)
    } else {
        quote!(#site())
    }
}

/// `Self::__cachekit_site_{name}()`, for an associated function.
///
/// In a trait impl the companions cannot be: rustc reports each as "not a
/// member of trait", and `Self::__cachekit_site_{name}` does not resolve.
/// The call then falls back to a trait method of that name, for every type
/// (an inherent function wins over it, so it only answers there). In the
/// function, its bound fails with a message that says what to write;
/// beside it, where the items are errors already, it answers quietly.
fn outside_trait_impls(func: &ItemFn, site: &Ident, p: &TokenStream, at: In) -> TokenStream {
    if at == In::Beside {
        return quote! {{
            #[allow(dead_code)]
            trait __CachekitSiteBesideTheFunction {
                fn #site() -> &'static #p::Site {
                    ::core::unreachable!()
                }
            }
            impl<T: ?::core::marker::Sized> __CachekitSiteBesideTheFunction for T {}
            Self::#site()
        }};
    }
    let name = &func.sig.ident;
    let message = format!(
        "#[cached] cannot add companions to a trait impl: write `#[cached(companions = false, ...)]` on `{name}`"
    );
    let note = format!(
        "`{name}_key`, `{name}_refresh`, `{name}_invalidate` and the entry of typed `#[invalidate]` targets \
         are functions beside `{name}`, and a trait impl holds only the trait's items"
    );
    quote! {{
        #[diagnostic::on_unimplemented(message = #message, label = "a cached method with companions", note = #note)]
        #[allow(dead_code)]
        trait __CachekitCompanionsInATraitImpl {}
        #[allow(dead_code)]
        trait __CachekitSiteBesideTheFunction {
            fn #site() -> &'static #p::Site
            where
                Self: __CachekitCompanionsInATraitImpl,
            {
                ::core::unreachable!()
            }
        }
        impl<T: ?::core::marker::Sized> __CachekitSiteBesideTheFunction for T {}
        Self::#site()
    }}
}

/// Where rustc reports what the return type lacks: at the return type (or
/// the function's name, for `()`).
fn return_span(func: &ItemFn) -> proc_macro2::Span {
    match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => func.sig.ident.span(),
    }
}

/// How the return type is stored, spanned at the return type so that a
/// value that cannot be stored is reported there: `Result` stores its
/// `Ok` and anything else itself (the `Kind` autoref pick); with
/// `cache_err`, the whole `Result`; with `hard_timeout`, wrapped so that an
/// abandoned computation answers `Err(E::from(Elapsed))`. The runtime's
/// traits behind the last two say what a return type lacks for them.
fn output_expr(func: &ItemFn, args: &CachedArgs, p: &TokenStream) -> TokenStream {
    let ret = return_type(func);
    let span = return_span(func);
    let p = &respan(p.clone(), span);
    let base = if args.cache_err.is_some() {
        quote_spanned!(span=> <#ret as #p::CacheErr>::OUTPUT)
    } else {
        quote_spanned! {span=>
            {
                #[allow(unused_imports)]
                use #p::{PlainKind as _, ResultKind as _};
                (&#p::Kind::<#ret>::NEW).output()
            }
        }
    };
    if args.hard_timeout.is_some() {
        quote_spanned!(span=> #p::timed::<#ret, _>(#base))
    } else {
        base
    }
}

/// The hooks on the value: `unless` and `ttl_from` as the user wrote them,
/// so that rustc reports a closure of the wrong type at the closure.
fn hooks_expr(func: &ItemFn, args: &CachedArgs, p: &TokenStream) -> TokenStream {
    if args.unless.is_none() && args.ttl_from.is_none() {
        return quote!(#p::Hooks::NONE);
    }
    let ret = return_type(func);
    let span = return_span(func);
    let p = &respan(p.clone(), span);
    let unless = args.unless.iter().map(|f| quote!(.unless(#f)));
    let ttl_from = args.ttl_from.iter().map(|f| quote!(.ttl_from(#f)));
    let hooks = quote_spanned!(span=> #p::hooks::<#ret, _>(&__cachekit_output));
    quote!(#hooks #(#unless)* #(#ttl_from)*)
}

/// The computation: the body, borrowing the arguments, or, when it may run
/// on its own task, made from owned copies of them.
fn computation(func: &ItemFn, args: &CachedArgs, p: &TokenStream) -> TokenStream {
    let block = &func.block;
    if args.detached().is_none() {
        return quote!(#p::Inline(async move #block));
    }
    let mut copies = Vec::new();
    let mut borrows = Vec::new();
    for input in &func.sig.inputs {
        if let Ok(Owning::Borrowed {
            ident,
            mutability,
            referent,
        }) = owning(input)
        {
            let owned = format_ident!("__cachekit_owned_{}", ident);
            let span = referent.span();
            let p = respan(p.clone(), span);
            copies.push(quote_spanned! {span=>
                let #owned = <#referent as #p::ToOwned>::to_owned(#ident);
            });
            borrows.push(quote! {
                #[allow(unused_variables, unused_mut)]
                let #mutability #ident: &#referent = ::core::borrow::Borrow::borrow(&#owned);
            });
        }
    }
    let body = if borrows.is_empty() {
        quote!(async move #block)
    } else {
        quote!(async move {
            #(#borrows)*
            #block
        })
    };
    quote! {
        #p::Owned(move || {
            #(#copies)*
            #body
        })
    }
}

/// The key of one call: the template's, or the default key.
fn key_expr(func: &ItemFn, args: &CachedArgs, params: &Params, p: &TokenStream) -> TokenStream {
    match &args.key {
        Some(t) => render(t, p),
        None => render_default(func, params, p),
    }
}

fn expand_cached(func: &ItemFn, args: &CachedArgs, params: &Params) -> TokenStream {
    let p = runtime(args.krate.as_ref());
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let site = site_expr(func, args, params, &p, In::Function);
    let key = key_expr(func, args, params, &p);
    let tags = args.tags.iter().map(|t| render(t, &p));
    let output = output_expr(func, args, &p);
    let hooks = hooks_expr(func, args, &p);
    let ret = return_type(func);
    // The call is spanned at the return type: a value that cannot be
    // stored is reported there.
    let span = return_span(func);
    let sync = sig.asyncness.is_none();
    let ps = respan(p.clone(), span);
    let call = if sync {
        quote_spanned! {span=>
            #ps::cached_sync::<#ret, _, _>(__cachekit_site, __cachekit_key, __cachekit_tags, __cachekit_output, __cachekit_hooks, move || #block)
        }
    } else {
        let entry = if args.process {
            quote_spanned!(span=> #ps::cached_process::<#ret, _, _>)
        } else {
            quote_spanned!(span=> #ps::cached::<#ret, _, _>)
        };
        let computation = computation(func, args, &p);
        quote_spanned! {span=>
            #entry(__cachekit_site, __cachekit_key, __cachekit_tags, __cachekit_output, __cachekit_hooks, #computation).await
        }
    };
    // The output and the hooks are where a return type that cannot be
    // stored, or lacks what an option needs, is reported: at the type.
    let output = quote_spanned!(span=> let __cachekit_output = #output;);
    let hooks = quote_spanned!(span=> let __cachekit_hooks = #hooks;);
    let main = quote! {
        #(#attrs)*
        #vis #sig {
            let __cachekit_site: &'static #p::Site = #site;
            let __cachekit_key: #p::String = #key;
            let __cachekit_tags: #p::Vec<#p::String> = #p::Vec::from([#(#tags),*]);
            #output
            #hooks
            #call
        }
    };
    if args.no_companions {
        return main;
    }
    let site = site_expr(func, args, params, &p, In::Beside);
    let hidden = hidden(func, args, &p, &site, &key);
    let companions = if params.simple {
        companions(func, params, &p, &site, &key)
    } else {
        TokenStream::new()
    };
    quote!(#main #hidden #companions)
}

/// `Self::` for an associated function.
fn self_prefix(params: &Params) -> TokenStream {
    if params.associated {
        quote!(Self::)
    } else {
        TokenStream::new()
    }
}

/// The site accessor and the entry of typed invalidation targets. `site`
/// is the expression that reaches the site (as in the function), `key` the
/// one that renders the key.
fn hidden(
    func: &ItemFn,
    args: &CachedArgs,
    p: &TokenStream,
    site: &TokenStream,
    key: &TokenStream,
) -> TokenStream {
    let Names {
        site: accessor,
        entry,
    } = Names::of(func);
    let site_static = site_static(args, func, p);
    let vis = &func.vis;
    let generics = &func.sig.generics;
    let where_clause = &generics.where_clause;
    let inputs = inputs_without_mut(func);
    let doc_entry = format!(
        "The entry of [`{}`] for these arguments: its call site and key. Typed `#[invalidate]` targets call this.",
        func.sig.ident
    );
    quote! {
        #[doc(hidden)]
        #[inline]
        fn #accessor() -> &'static #p::Site {
            #site_static
            &__CACHEKIT_SITE
        }

        #[doc = #doc_entry]
        #[doc(hidden)]
        #[allow(unused_variables, dead_code, unreachable_pub, clippy::needless_pass_by_value, clippy::unused_self, clippy::too_many_arguments)]
        #vis fn #entry #generics (#inputs) -> #p::Entry #where_clause {
            #p::Entry { site: #site, key: #key }
        }
    }
}

/// `name_key`, `name_refresh` and `name_invalidate`, with the same
/// parameters.
fn companions(
    func: &ItemFn,
    params: &Params,
    p: &TokenStream,
    site: &TokenStream,
    key: &TokenStream,
) -> TokenStream {
    let vis = &func.vis;
    let name = &func.sig.ident;
    let generics = &func.sig.generics;
    let where_clause = &generics.where_clause;
    let inputs = inputs_without_mut(func);
    let ret = return_type(func);
    let key_fn = format_ident!("{}_key", name);
    let refresh_fn = format_ident!("{}_refresh", name);
    let invalidate_fn = format_ident!("{}_invalidate", name);
    let this = self_prefix(params);
    let names = &params.names;
    let receiver = params.receiver.then(|| quote!(self,));
    let turbofish = turbofish(&func.sig.generics);
    let doc_key = format!(
        "The cache key of [`{name}`] for these arguments, as its template renders it (without the key prefix and namespace)."
    );
    let doc_refresh = format!(
        "Recomputes [`{name}`] for these arguments and stores the result, whatever is cached."
    );
    let doc_invalidate = format!(
        "Deletes the cached result of [`{name}`] for these arguments. Returns whether there was one."
    );
    // A forced refresh is a task-local scope: a sync function has none.
    let refresh = func.sig.asyncness.is_some().then(|| {
        quote! {
            #[doc = #doc_refresh]
            #[allow(dead_code, clippy::needless_pass_by_value)]
            #vis async fn #refresh_fn #generics (#inputs) -> #ret #where_clause {
                #p::force_refresh(#this #name #turbofish (#receiver #(#names),*)).await
            }
        }
    });
    quote! {
        #[doc = #doc_key]
        #[allow(unused_variables, dead_code, clippy::needless_pass_by_value, clippy::unused_self)]
        #vis fn #key_fn #generics (#inputs) -> #p::String #where_clause {
            #key
        }

        #refresh

        #[doc = #doc_invalidate]
        #[allow(unused_variables, dead_code, clippy::needless_pass_by_value, clippy::unused_self)]
        #vis async fn #invalidate_fn #generics (#inputs) -> ::core::result::Result<bool, #p::Error> #where_clause {
            #p::invalidate_entry(#site, #key).await
        }
    }
}

/// `::<T, N>`: the type and const parameters, passed on as they are (a
/// type argument only the return type names cannot be inferred). Lifetimes
/// are left to inference.
fn turbofish(generics: &syn::Generics) -> TokenStream {
    let args: Vec<&Ident> = generics
        .params
        .iter()
        .filter_map(|g| match g {
            syn::GenericParam::Type(t) => Some(&t.ident),
            syn::GenericParam::Const(c) => Some(&c.ident),
            syn::GenericParam::Lifetime(_) => None,
        })
        .collect();
    if args.is_empty() {
        TokenStream::new()
    } else {
        quote!(::<#(#args),*>)
    }
}

/// `#[cached(batch = ids)]`: one `MGET` for every id, the body for the
/// missing ones only.
fn expand_batch(func: &ItemFn, args: &CachedArgs, param: &PatType) -> TokenStream {
    let p = runtime(args.krate.as_ref());
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let site = site_static(args, func, &p);
    let Pat::Ident(binding) = &*param.pat else {
        unreachable!("checked")
    };
    let ids = &binding.ident;
    let key = render_batch(args.key.as_ref().expect("checked"), &p, ids);
    let rebind = batch_rebind(param);
    let span = return_span(func);
    let ret = return_type(func);
    let output = quote_spanned! {span=>
        {
            #[allow(unused_imports)]
            use #p::{PlainKind as _, ResultKind as _};
            (&#p::Kind::<#ret>::NEW).output()
        }
    };
    let engine = quote_spanned!(span=> #p::get_or_compute_batch::<_, #ret, _, _, _>);
    quote! {
        #(#attrs)*
        #vis #sig {
            #site
            let mut __cachekit_ids = #p::Vec::new();
            let mut __cachekit_keys: #p::Vec<#p::String> = #p::Vec::new();
            for __cachekit_e in #ids.iter() {
                __cachekit_keys.push(#key);
                __cachekit_ids.push(::core::clone::Clone::clone(__cachekit_e));
            }
            let __cachekit_output = #output;
            #engine(&__CACHEKIT_SITE, __cachekit_ids, __cachekit_keys, __cachekit_output, move |__cachekit_missing| async move {
                #rebind
                #block
            })
            .await
        }
    }
}

/// The body of a batch function sees the missing ids under the collection
/// parameter's name and type.
fn batch_rebind(param: &PatType) -> TokenStream {
    let pat = &param.pat;
    let ty = &param.ty;
    match &**ty {
        Type::Reference(r) if matches!(&*r.elem, Type::Slice(_)) => quote! {
            let __cachekit_owned = __cachekit_missing;
            let #pat: #ty = &__cachekit_owned;
        },
        Type::Reference(r) => {
            let owned = &r.elem;
            quote! {
                let __cachekit_owned: #owned = ::core::iter::IntoIterator::into_iter(__cachekit_missing).collect();
                let #pat: #ty = &__cachekit_owned;
            }
        }
        _ => {
            quote!(let #pat: #ty = ::core::iter::IntoIterator::into_iter(__cachekit_missing).collect();)
        }
    }
}
