//! Key rendering: the statements that write a template, or a function's
//! default key, through a `KeyWriter`. `#[cached]`, `#[invalidate]` and
//! `#[derive(CacheKey)]` all render through here.
//!
//! Each placeholder is written by `__private::key_part`, spanned at the
//! template, so that a value that is not a `KeyPart` is reported there.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{GenericParam, Ident, ItemFn};

use crate::attr::TemplateLit;
use crate::func::Params;
use crate::template::Segment;

/// The expression a placeholder path refers to, spanned at the template.
/// Paths start at `base` (`self` in a derive) or at a parameter; in a batch
/// function, the collection parameter stands for one element.
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

/// A field access: a name, or a tuple index.
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

/// A block evaluating to the `String` that `writes` write.
fn into_string(writes: TokenStream, p: &TokenStream) -> TokenStream {
    // One allocation for most keys, instead of a few as the key grows.
    quote!({
        let mut __cachekit_buf = #p::String::with_capacity(64);
        let mut __cachekit_w = #p::KeyWriter::new(&mut __cachekit_buf);
        #writes
        __cachekit_buf
    })
}

/// An expression rendering `t` over the function's parameters.
pub(crate) fn render(t: &TemplateLit, p: &TokenStream) -> TokenStream {
    into_string(write_template(t, p, None, None), p)
}

/// An expression rendering `t` for one element `__cachekit_e` of a batch
/// function's collection parameter `ids`.
pub(crate) fn render_batch(t: &TemplateLit, p: &TokenStream, ids: &Ident) -> TokenStream {
    into_string(write_template(t, p, None, Some(ids)), p)
}

/// Statements writing `t` over `self`'s fields, into `__cachekit_w`.
pub(crate) fn write_fields(t: &TemplateLit, p: &TokenStream) -> TokenStream {
    write_template(t, p, Some(&quote!(self)), None)
}

/// The key of a function without a template: its path, its type arguments
/// (and the concrete types of its `impl Trait` arguments), then all its
/// arguments, each after a `:`.
pub(crate) fn render_default(func: &ItemFn, params: &Params, p: &TokenStream) -> TokenStream {
    let name = func.sig.ident.to_string();
    let path = if params.associated {
        quote! {
            __cachekit_w.text(::core::any::type_name::<Self>());
            __cachekit_w.literal(::core::concat!("::", #name));
        }
    } else {
        quote!(__cachekit_w.literal(::core::concat!(::core::module_path!(), "::", #name));)
    };
    let generics = func.sig.generics.params.iter().filter_map(|g| match g {
        GenericParam::Type(t) => {
            let t = &t.ident;
            Some(quote!(__cachekit_w.literal(":"); __cachekit_w.text(::core::any::type_name::<#t>());))
        }
        GenericParam::Const(c) => {
            let c = &c.ident;
            Some(quote!(__cachekit_w.literal(":"); #p::key_part(&#c, &mut __cachekit_w);))
        }
        GenericParam::Lifetime(_) => None,
    });
    let impl_types = params.impl_trait.iter().map(|n| {
        quote!(__cachekit_w.literal(":"); __cachekit_w.text(::core::any::type_name_of_val(&#n));)
    });
    let args = params.names.iter().map(|n| {
        let span = n.span();
        quote_spanned!(span=> __cachekit_w.literal(":"); #p::key_part(&#n, &mut __cachekit_w);)
    });
    into_string(quote!(#path #(#generics)* #(#impl_types)* #(#args)*), p)
}
