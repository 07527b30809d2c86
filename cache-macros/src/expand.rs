//! Expansion: turns checked arguments and the user's function into code
//! that calls the runtime through `::cachekit::__private`.
//!
//! The user's signature is kept token for token; the body moves into an
//! `async move` block handed to one runtime function. On any error the
//! function is emitted unchanged beside the `compile_error!`s, so the rest of
//! the crate still type-checks.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::attr::{CachedArgs, CodecArg, InvalidateArgs, TemplateLit, parse_args};
use crate::errors::Errors;
use crate::template::Segment;

/// The parameters of a function, as far as keys are concerned.
struct Params {
    /// `self` is available (any receiver form).
    receiver: bool,
    /// Names bound by the parameters, in order.
    names: Vec<Ident>,
    /// Whether every parameter is a plain identifier (companions can pass
    /// them on).
    simple: bool,
}

impl Params {
    fn of(func: &ItemFn) -> Params {
        let mut params = Params {
            receiver: false,
            names: Vec::new(),
            simple: true,
        };
        for input in &func.sig.inputs {
            match input {
                FnArg::Receiver(_) => params.receiver = true,
                FnArg::Typed(t) => {
                    if !matches!(&*t.pat, Pat::Ident(p) if p.subpat.is_none()) {
                        params.simple = false;
                    }
                    collect_bindings(&t.pat, &mut params.names);
                }
            }
        }
        params
    }

    fn knows(&self, name: &str) -> bool {
        (name == "self" && self.receiver) || self.names.iter().any(|n| n == name)
    }

    fn describe(&self) -> String {
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

/// Checks that every placeholder of `t` names something `known` accepts.
fn check_placeholders(
    t: &TemplateLit,
    what: &str,
    known: impl Fn(&str) -> bool,
    describe: impl Fn() -> String,
    errors: &mut Errors,
) {
    for path in t.template.placeholders() {
        if !known(&path[0]) {
            errors.push(syn::Error::new(
                t.lit.span(),
                format!(
                    "unknown placeholder `{{{}}}` in {what}: no `{}` here; {}",
                    path.join("."),
                    path[0],
                    describe()
                ),
            ));
        }
    }
}

/// The expression a placeholder path refers to, spanned at the template.
/// In a batch function, the collection parameter stands for one element.
fn place_expr(
    path: &[String],
    span: Span,
    base: Option<&TokenStream>,
    batch: Option<&Ident>,
) -> TokenStream {
    let mut expr = match (base, path[0].as_str()) {
        (_, first) if batch.is_some_and(|b| b == first) => quote_spanned!(span=> __cachekit_e),
        (_, "self") => quote_spanned!(span=> self),
        (Some(base), first) => {
            let field = member(first, span);
            quote_spanned!(span=> #base.#field)
        }
        (None, first) => {
            let id = Ident::new(first, span);
            quote_spanned!(span=> #id)
        }
    };
    for field in &path[1..] {
        let member = member(field, span);
        expr = quote_spanned!(span=> #expr.#member);
    }
    expr
}

fn member(field: &str, span: Span) -> TokenStream {
    match field.parse::<u32>() {
        Ok(index) => {
            let index = syn::Index { index, span };
            quote!(#index)
        }
        Err(_) => {
            let id = Ident::new(field, span);
            quote!(#id)
        }
    }
}

/// Statements writing `t` into `__cachekit_w`.
fn write_template(
    t: &TemplateLit,
    p: &TokenStream,
    base: Option<&TokenStream>,
    batch: Option<&Ident>,
) -> TokenStream {
    let span = t.lit.span();
    let parts = t.template.segments.iter().map(|segment| match segment {
        Segment::Literal(text) => quote!(__cachekit_w.literal(#text);),
        Segment::Placeholder(path) => {
            let expr = place_expr(path, span, base, batch);
            quote_spanned!(span=> #p::key_part(&(#expr), &mut __cachekit_w);)
        }
    });
    quote!(#(#parts)*)
}

/// An expression rendering `t` to a `String`.
fn render(t: &TemplateLit, p: &TokenStream) -> TokenStream {
    render_with(t, p, None)
}

fn render_with(t: &TemplateLit, p: &TokenStream, batch: Option<&Ident>) -> TokenStream {
    let writes = write_template(t, p, None, batch);
    // One allocation for most keys, instead of a few as the key grows.
    quote!({
        let mut __cachekit_buf = #p::String::with_capacity(64);
        let mut __cachekit_w = #p::KeyWriter::new(&mut __cachekit_buf);
        #writes
        __cachekit_buf
    })
}

/// The key of a function without a template: its path and all its arguments.
fn render_default(func: &ItemFn, params: &Params, p: &TokenStream) -> TokenStream {
    let name = func.sig.ident.to_string();
    let path = if params.receiver {
        quote! {
            __cachekit_w.text(::core::any::type_name::<Self>());
            __cachekit_w.literal(::core::concat!("::", #name));
        }
    } else {
        quote!(__cachekit_w.literal(::core::concat!(::core::module_path!(), "::", #name));)
    };
    let args = params.names.iter().map(|n| {
        let span = n.span();
        quote_spanned!(span=> __cachekit_w.literal(":"); #p::key_part(&#n, &mut __cachekit_w);)
    });
    quote!({
        let mut __cachekit_buf = #p::String::with_capacity(64);
        let mut __cachekit_w = #p::KeyWriter::new(&mut __cachekit_buf);
        #path
        #(#args)*
        __cachekit_buf
    })
}

fn krate(path: Option<&syn::Path>) -> TokenStream {
    match path {
        Some(path) => quote!(#path::__private),
        None => quote!(::cachekit::__private),
    }
}

fn return_type(func: &ItemFn) -> TokenStream {
    match &func.sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    }
}

fn contains_impl_trait(ty: &Type) -> bool {
    let mut found = false;
    ty_tokens_walk(quote!(#ty), &mut found);
    found
}

fn ty_tokens_walk(tokens: TokenStream, found: &mut bool) {
    for tt in tokens {
        match tt {
            proc_macro2::TokenTree::Ident(i) if i == "impl" => *found = true,
            proc_macro2::TokenTree::Group(g) => ty_tokens_walk(g.stream(), found),
            _ => {}
        }
    }
}

/// Common checks of the annotated function.
fn check_function(func: &ItemFn, attr: &str, errors: &mut Errors) {
    if func.sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            func.sig.fn_token.span,
            format!("#[{attr}] applies to an `async fn`; make this function async"),
        ));
    }
    if let ReturnType::Type(_, ty) = &func.sig.output
        && contains_impl_trait(ty)
    {
        errors.push(syn::Error::new_spanned(
            ty,
            format!(
                "#[{attr}] needs a nameable return type; `impl Trait` cannot be stored or restored"
            ),
        ));
    }
}

fn fail_soft(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#item #error)
}

/// The function under `#[attr]`; anything else comes back unchanged, with
/// the error.
fn parse_fn(item: &TokenStream, attr: &str) -> Result<ItemFn, TokenStream> {
    syn::parse2(item.clone()).map_err(|e| {
        let message = format!("#[{attr}] applies to an `async fn`");
        fail_soft(item.clone(), syn::Error::new(e.span(), message))
    })
}

/// `#[cached(...)]`.
pub(crate) fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match parse_fn(&item, "cached") {
        Ok(f) => f,
        Err(out) => return out,
    };
    let mut errors = Errors::default();
    let args = match parse_args(args) {
        Ok(raw) => CachedArgs::from_args(raw, &mut errors),
        Err(e) => {
            errors.push(e);
            CachedArgs::from_args(Vec::new(), &mut Errors::default())
        }
    };
    check_function(&func, "cached", &mut errors);
    let params = Params::of(&func);
    let fn_name = func.sig.ident.to_string();
    let describe = || format!("`{fn_name}`: {}", params.describe());
    if let Some(key) = &args.key {
        check_placeholders(key, "the key", |n| params.knows(n), describe, &mut errors);
    }
    for tag in &args.tags {
        check_placeholders(tag, "a tag", |n| params.knows(n), describe, &mut errors);
    }
    let batch = args
        .batch
        .as_ref()
        .map(|ids| check_batch(&func, &args, ids, &mut errors));
    if let Err(e) = errors.finish() {
        return fail_soft(item, e);
    }
    match batch {
        Some(Some(param)) => expand_batch(&func, &args, param),
        _ => expand_cached(&func, &args, &params),
    }
}

/// The collection parameter of a batch function, after checking the
/// options that go with it.
fn check_batch<'f>(
    func: &'f ItemFn,
    args: &CachedArgs,
    ids: &Ident,
    errors: &mut Errors,
) -> Option<&'f syn::PatType> {
    let param = func.sig.inputs.iter().find_map(|input| match input {
        FnArg::Typed(t) if matches!(&*t.pat, Pat::Ident(p) if p.ident == *ids) => Some(t),
        _ => None,
    });
    if param.is_none() {
        errors.push(syn::Error::new(
            ids.span(),
            format!(
                "`batch = {ids}`: `{}` has no parameter `{ids}` holding the ids",
                func.sig.ident
            ),
        ));
    }
    match &args.key {
        _ if param.is_none() => {}
        Some(key) if key.template.placeholders().any(|p| *ids == p[0]) => {}
        Some(key) => errors.push(syn::Error::new(
            key.lit.span(),
            format!("the key of a batch function must use `{{{ids}}}`: each id gets its own entry"),
        )),
        None => errors.push(syn::Error::new(
            ids.span(),
            format!("a batch function needs a key template using `{{{ids}}}`, e.g. `key = \"user:{{{ids}}}\"`"),
        )),
    }
    for (set, option) in [
        (args.lock, "lock"),
        (args.stale_ms.is_some(), "stale"),
        (args.refresh_early, "refresh"),
        (!args.tags.is_empty(), "tags"),
    ] {
        if set {
            errors.push(syn::Error::new(
                ids.span(),
                format!("`batch` cannot be combined with `{option}`"),
            ));
        }
    }
    param
}

/// `#[cached(batch = ids)]`: one `MGET` for every id, the body for the
/// missing ones only.
fn expand_batch(func: &ItemFn, args: &CachedArgs, param: &syn::PatType) -> TokenStream {
    let p = krate(args.krate.as_ref());
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let site = site(args, func, &p);
    let Pat::Ident(binding) = &*param.pat else {
        unreachable!("checked")
    };
    let ids = &binding.ident;
    let pat = &param.pat;
    let ty = &param.ty;
    let key = render_with(args.key.as_ref().expect("checked"), &p, Some(ids));
    // The body sees the missing ids under the parameter's name and type.
    let rebind = match &**ty {
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
    };
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

fn site(args: &CachedArgs, func: &ItemFn, p: &TokenStream) -> TokenStream {
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

fn expand_cached(func: &ItemFn, args: &CachedArgs, params: &Params) -> TokenStream {
    let p = krate(args.krate.as_ref());
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let site = site(args, func, &p);
    let key = match &args.key {
        Some(t) => render(t, &p),
        None => render_default(func, params, &p),
    };
    let tags = args.tags.iter().map(|t| render(t, &p));
    let (output, engine) = engine(func, &p, false);
    // A refresh in the background needs a computation that owns its
    // inputs: made from the (moved) arguments only when it runs.
    let call = if args.stale_ms.is_some() || args.refresh_early {
        let ret = return_type(func);
        quote! {
            #p::cached::<#ret, _, _>(&__CACHEKIT_SITE, __cachekit_key, __cachekit_tags, __cachekit_output, #p::Hooks::NONE, #p::Owned(move || async move #block)).await
        }
    } else {
        quote!(#engine(&__CACHEKIT_SITE, __cachekit_key, __cachekit_tags, __cachekit_output, async move #block).await)
    };
    let main = quote! {
        #(#attrs)*
        #vis #sig {
            #site
            let __cachekit_key: #p::String = #key;
            let __cachekit_tags: #p::Vec<#p::String> = #p::Vec::from([#(#tags),*]);
            let __cachekit_output = #output;
            #call
        }
    };
    if !args.companions || !params.simple {
        return main;
    }
    let companions = companions(func, params, &p, &key, &site);
    quote!(#main #companions)
}

/// `name_key`, `name_refresh` and `name_invalidate`, with the same parameters.
fn companions(
    func: &ItemFn,
    params: &Params,
    p: &TokenStream,
    key: &TokenStream,
    site: &TokenStream,
) -> TokenStream {
    let vis = &func.vis;
    let sig = &func.sig;
    let name = &sig.ident;
    let (generics, where_clause) = (&sig.generics, &sig.generics.where_clause);
    let inputs = &sig.inputs;
    let ret = return_type(func);
    let key_fn = format_ident!("{}_key", name);
    let refresh_fn = format_ident!("{}_refresh", name);
    let invalidate_fn = format_ident!("{}_invalidate", name);
    let names = &params.names;
    let call = if params.receiver {
        quote!(Self::#name(self, #(#names),*))
    } else {
        quote!(#name(#(#names),*))
    };
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
        #[allow(unused_variables, unused_mut, dead_code, clippy::needless_pass_by_value, clippy::unused_self)]
        #vis fn #key_fn #generics (#inputs) -> #p::String #where_clause {
            #key
        }

        #[doc = #doc_refresh]
        #[allow(dead_code, clippy::needless_pass_by_value)]
        #vis async fn #refresh_fn #generics (#inputs) -> #ret #where_clause {
            #p::force_refresh(#call).await
        }

        #[doc = #doc_invalidate]
        #[allow(unused_variables, unused_mut, dead_code, clippy::needless_pass_by_value, clippy::unused_self)]
        #vis async fn #invalidate_fn #generics (#inputs) -> ::core::result::Result<bool, #p::Error> #where_clause {
            #site
            #p::invalidate_entry(&__CACHEKIT_SITE, #key).await
        }
    }
}

/// `#[invalidate(...)]`.
pub(crate) fn invalidate(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match parse_fn(&item, "invalidate") {
        Ok(f) => f,
        Err(out) => return out,
    };
    let mut errors = Errors::default();
    let args = match parse_args(args) {
        Ok(raw) => InvalidateArgs::from_args(raw, &mut errors),
        Err(e) => {
            errors.push(e);
            return fail_soft(item, errors.finish().unwrap_err());
        }
    };
    check_function(&func, "invalidate", &mut errors);
    let params = Params::of(&func);
    let fn_name = func.sig.ident.to_string();
    let describe = || format!("`{fn_name}`: {}", params.describe());
    for t in &args.keys {
        check_placeholders(
            t,
            "an invalidation template",
            |n| params.knows(n),
            describe,
            &mut errors,
        );
    }
    for t in &args.tags {
        check_placeholders(t, "a tag", |n| params.knows(n), describe, &mut errors);
    }
    if let Err(e) = errors.finish() {
        return fail_soft(item, e);
    }
    let p = krate(args.krate.as_ref());
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &func;
    let ret = return_type(&func);
    let name = sig.ident.to_string();
    let keys = args.keys.iter().map(|t| render(t, &p));
    let tags = args.tags.iter().map(|t| render(t, &p));
    let namespaces = &args.namespaces;
    let targets = quote! {
        static __CACHEKIT_COUNTERS: #p::Counters =
            #p::Counters::new(#p::Scope::Function, ::core::concat!(::core::module_path!(), "::", #name));
        let __cachekit_targets = #p::Targets {
            keys: #p::Vec::from([#(#keys),*]),
            tags: #p::Vec::from([#(#tags),*]),
            namespaces: &[#(#namespaces),*],
            ..::core::default::Default::default()
        };
    };
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

/// `#[derive(CacheKey)]`.
pub(crate) fn derive_cache_key(input: TokenStream) -> TokenStream {
    let input: syn::DeriveInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    match crate::derive::expand(&input) {
        Ok(tokens) => tokens,
        Err(e) => e.to_compile_error(),
    }
}

/// Shared with `derive`: renders a template over `self`'s fields.
pub(crate) fn write_fields_template(t: &TemplateLit, p: &TokenStream) -> TokenStream {
    write_template(t, p, Some(&quote!(self)), None)
}

/// Shared with `derive`: checks placeholders against field names.
pub(crate) fn check_fields(
    t: &TemplateLit,
    fields: &[String],
    type_name: &str,
    errors: &mut Errors,
) {
    let describe = || {
        if fields.is_empty() {
            format!("`{type_name}` has no fields")
        } else {
            format!(
                "the fields of `{type_name}` are {}",
                fields
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    };
    check_placeholders(
        t,
        "the key",
        |n| fields.iter().any(|f| f == n),
        describe,
        errors,
    );
}

/// The runtime path for derives (which have no `crate` option).
pub(crate) fn runtime_path() -> TokenStream {
    krate(None)
}
