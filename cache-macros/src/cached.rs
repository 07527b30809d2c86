//! Expansion of `#[cached]`: the function, its call site, its companions
//! and its hidden entry.
//!
//! The user's signature is kept token for token; the body moves into an
//! `async move` block handed to one runtime function,
//! `__private::get_or_compute`, with the function's `Site` (its policy and
//! counters). Beside the function, unless `companions = false`:
//!
//! * `__cachekit_site_{name}()`: the one `static Site` of the function,
//!   shared by the function and everything below;
//! * `__cachekit_entry_{name}(<params>) -> Entry`: the site and the key
//!   for these arguments, which typed `#[invalidate(name(...))]` targets
//!   call;
//! * `{name}_key`, `{name}_refresh`, `{name}_invalidate`: the companions.
//!
//! For an associated function they are associated functions, reached
//! through `Self::`.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, Pat, PatType, ReturnType, Type};

use crate::attr::{CachedArgs, CodecArg};
use crate::check;
use crate::errors::Errors;
use crate::func::{Params, fail_soft, inputs_without_mut, parse_fn, return_type, runtime};
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
    check::function(&func, "cached", &mut errors);
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

/// The function's `static` call site, named `__CACHEKIT_SITE`.
fn site_static(args: &CachedArgs, func: &ItemFn, p: &TokenStream) -> TokenStream {
    let name = func.sig.ident.to_string();
    let mut options = Vec::new();
    if let Some(ms) = args.ttl_ms {
        options.push(quote!(.ttl_ms(#ms)));
    }
    if let Some(ns) = &args.namespace {
        options.push(quote!(.namespace(#ns)));
    }
    if !args.cache_none {
        options.push(quote!(.cache_none(false)));
    }
    if args.lock {
        let ms = args.lock_ttl_ms.unwrap_or(5_000);
        options.push(quote!(.lock_ms(#ms)));
    }
    if args.refresh_early {
        let beta = args.beta.unwrap_or(1.0);
        options.push(quote!(.refresh_early(#beta)));
    }
    if let Some(ms) = args.stale_ms {
        options.push(quote!(.stale_ms(#ms)));
    }
    if args.local {
        options.push(quote!(.local(true)));
    }
    if args.codec != CodecArg::Json || args.compress.is_some() {
        let codec = match args.codec {
            CodecArg::Json => quote!(#p::Codec::Json),
            CodecArg::MsgPack => quote!(#p::Codec::MsgPack),
        };
        let compress = match args.compress {
            Some(n) => quote!(::core::option::Option::Some(#n)),
            None => quote!(::core::option::Option::None),
        };
        options.push(quote!(.format(#p::Format { codec: #codec, compress_above: #compress })));
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
    if !args.companions {
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

/// How the return type is stored (`Result`: its `Ok`; anything else:
/// itself), and the runtime entry point to call, both spanned at the return
/// type so that a value that cannot be stored is reported there.
fn engine(func: &ItemFn, p: &TokenStream, batch: bool) -> (TokenStream, TokenStream) {
    let ret = return_type(func);
    let span = match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => func.sig.ident.span(),
    };
    let output = quote_spanned! {span=>
        {
            #[allow(unused_imports)]
            use #p::{PlainKind as _, ResultKind as _};
            (&#p::Kind::<#ret>::NEW).output()
        }
    };
    let entry = if batch {
        quote_spanned!(span=> #p::get_or_compute_batch::<_, #ret, _, _, _>)
    } else {
        quote_spanned!(span=> #p::get_or_compute::<#ret, _, _>)
    };
    (output, entry)
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
    let (output, engine) = engine(func, &p, false);
    // A refresh in the background needs a computation that owns its
    // inputs: made from the (moved) arguments only when it runs.
    // The call is spanned at the return type: a value that cannot be
    // stored is reported there.
    let span = match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => func.sig.ident.span(),
    };
    let call = if args.stale_ms.is_some() || args.refresh_early {
        let ret = return_type(func);
        quote_spanned! {span=>
            #p::cached::<#ret, _, _>(__cachekit_site, __cachekit_key, __cachekit_tags, __cachekit_output, #p::Hooks::NONE, #p::Owned(move || async move #block)).await
        }
    } else {
        quote_spanned!(span=> #engine(__cachekit_site, __cachekit_key, __cachekit_tags, __cachekit_output, async move #block).await)
    };
    let main = quote! {
        #(#attrs)*
        #vis #sig {
            let __cachekit_site: &'static #p::Site = #site;
            let __cachekit_key: #p::String = #key;
            let __cachekit_tags: #p::Vec<#p::String> = #p::Vec::from([#(#tags),*]);
            let __cachekit_output = #output;
            #call
        }
    };
    if !args.companions {
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
    quote! {
        #[doc = #doc_key]
        #[allow(unused_variables, dead_code, clippy::needless_pass_by_value, clippy::unused_self)]
        #vis fn #key_fn #generics (#inputs) -> #p::String #where_clause {
            #key
        }

        #[doc = #doc_refresh]
        #[allow(dead_code, clippy::needless_pass_by_value)]
        #vis async fn #refresh_fn #generics (#inputs) -> #ret #where_clause {
            #p::force_refresh(#this #name #turbofish (#receiver #(#names),*)).await
        }

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
    let (output, engine) = engine(func, &p, true);
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
