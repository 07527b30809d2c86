//! `#[derive(CacheKey)]`: a struct as a typed cache key.
//!
//! The struct implements `KeyPart` (so it can be a placeholder) and
//! `CacheKey`, and gets a pattern builder, `{Name}Pattern`, with a setter
//! per placeholder; unset placeholders are wildcards.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Type};

use crate::attr::{TemplateLit, cache_key_template, field_skip};
use crate::check;
use crate::errors::{Code, Errors};
use crate::func::runtime;
use crate::render::write_fields;
use crate::template::{Segment, Template};

/// `#[derive(CacheKey)]`.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    derive(&input).unwrap_or_else(syn::Error::into_compile_error)
}

/// A field, as templates see it.
struct Field<'a> {
    /// The name in templates: the field name, or its index.
    name: String,
    /// Where it is declared.
    span: Span,
    ty: &'a Type,
    skip: bool,
}

/// A setter of the pattern builder: its name and the placeholder it sets.
struct Slot {
    setter: Ident,
    path: Vec<String>,
}

fn slot_of<'s>(slots: &'s [Slot], path: &[String]) -> &'s Slot {
    slots
        .iter()
        .find(|s| s.path == path)
        .expect("a slot per placeholder")
}

fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let Data::Struct(data) = &input.data else {
        return Err(Code::DeriveNotStruct.error(
            input.ident.span(),
            "#[derive(CacheKey)] supports structs; for an enum, implement `cachekit::KeyPart` by hand",
        ));
    };
    let mut errors = Errors::default();
    let explicit = struct_template(input, &mut errors);
    let fields = fields(&data.fields, &mut errors);
    let template = match explicit {
        Some(t) => {
            check_template(&t, &fields, &input.ident, &mut errors);
            t
        }
        None => default_template(&input.ident, &fields),
    };
    let slots = slots(&template, &fields, &mut errors);
    errors.finish()?;
    let p = runtime(None);
    let key = key_impls(input, &template, &fields, &p);
    let pattern = pattern_builder(input, &template, &slots, &p);
    Ok(quote!(#key #pattern))
}

/// The template of `#[cache_key("...")]`, if the struct has one.
fn struct_template(input: &DeriveInput, errors: &mut Errors) -> Option<TemplateLit> {
    let mut template: Option<TemplateLit> = None;
    let mut seen = false;
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cache_key"))
    {
        if seen {
            errors.push(Code::CacheKeyDuplicate.spanned(
                attr,
                "duplicate `#[cache_key(...)]`: a struct has one key template",
            ));
            continue;
        }
        seen = true;
        template = cache_key_template(attr, errors);
    }
    template
}

fn fields<'a>(fields: &'a Fields, errors: &mut Errors) -> Vec<Field<'a>> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| Field {
            name: f
                .ident
                .as_ref()
                .map_or_else(|| i.to_string(), Ident::to_string),
            span: f.ident.as_ref().map_or_else(|| f.ty.span(), Ident::span),
            ty: &f.ty,
            skip: skipped(f, errors),
        })
        .collect()
}

fn skipped(field: &syn::Field, errors: &mut Errors) -> bool {
    // Every attribute is checked, so that each malformed one is reported.
    let mut skip = false;
    for attr in field
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cache_key"))
    {
        skip |= field_skip(attr, errors);
    }
    skip
}

/// An explicit template's placeholders against the fields.
fn check_template(t: &TemplateLit, fields: &[Field<'_>], name: &Ident, errors: &mut Errors) {
    let describe = || {
        if fields.is_empty() {
            format!("`{name}` has no fields")
        } else {
            let names: Vec<String> = fields.iter().map(|f| format!("`{}`", f.name)).collect();
            format!("the fields of `{name}` are {}", names.join(", "))
        }
    };
    let known = |n: &str| fields.iter().any(|f| f.name == n);
    check::placeholders(t, "the key", known, describe, errors);
    for path in t.template.placeholders() {
        if fields.iter().any(|f| f.skip && f.name == path[0]) {
            errors.push(Code::SkippedFieldUsed.error(
                t.lit.span(),
                format!(
                    "field `{}` is marked `#[cache_key(skip)]` but the template uses it",
                    path[0]
                ),
            ));
        }
    }
}

/// The type's name and every field that is not skipped, in order:
/// `Name:{a}:{b}`, or `Name:{0}:{1}` for a tuple struct.
fn default_template(name: &Ident, fields: &[Field<'_>]) -> TemplateLit {
    let mut segments = vec![Segment::Literal(name.to_string())];
    let mut source = name.to_string();
    for f in fields.iter().filter(|f| !f.skip) {
        match segments.last_mut() {
            Some(Segment::Literal(text)) => text.push(':'),
            _ => segments.push(Segment::Literal(":".into())),
        }
        segments.push(Segment::Placeholder(vec![f.name.clone()]));
        source.push_str(&format!(":{{{}}}", f.name));
    }
    TemplateLit {
        lit: syn::LitStr::new(&source, name.span()),
        template: Template { segments },
    }
}

/// One pattern setter per distinct placeholder, named after its path
/// (`{q.lang}`: `q_lang`; `{0}`: `field_0`). Two placeholders whose names
/// meet, or a name that is one of the builder's own methods, are errors,
/// reported at the field (or the template).
fn slots(t: &TemplateLit, fields: &[Field<'_>], errors: &mut Errors) -> Vec<Slot> {
    let mut slots: Vec<Slot> = Vec::new();
    for path in t.template.placeholders() {
        let joined = path.join("_");
        let name = if joined.starts_with(|c: char| c.is_ascii_digit()) {
            format!("field_{joined}")
        } else {
            joined
        };
        let span = fields
            .iter()
            .find(|f| f.name == path[0])
            .map_or_else(|| t.lit.span(), |f| f.span);
        match slots.iter().find(|s| s.setter == name) {
            Some(other) if other.path == path => {}
            Some(other) => errors.push(Code::SetterCollision.error(
                span,
                format!(
                    "`{{{}}}` and `{{{}}}` would both get the pattern setter `{name}`; rename one of the fields",
                    other.path.join("."),
                    path.join(".")
                ),
            )),
            None if name == "build" || name == "invalidate" => errors.push(Code::SetterReserved.error(
                span,
                format!(
                    "`{{{}}}` would get the pattern setter `{name}`, which is the pattern's own `{name}()` method; rename the field",
                    path.join(".")
                ),
            )),
            None => slots.push(Slot {
                setter: Ident::new(&name, Span::call_site()),
                path: path.to_vec(),
            }),
        }
    }
    slots
}

/// `KeyPart` and `CacheKey`. Only the fields the template writes need to be
/// `KeyPart`: a skipped or unused field needs nothing.
fn key_impls(
    input: &DeriveInput,
    t: &TemplateLit,
    fields: &[Field<'_>],
    p: &TokenStream,
) -> TokenStream {
    let name = &input.ident;
    let pattern = format_ident!("{}Pattern", name);
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut where_clause = where_clause
        .cloned()
        .unwrap_or_else(|| syn::parse_quote!(where));
    for f in fields {
        let written = t
            .template
            .placeholders()
            .any(|path| path == [f.name.as_str()]);
        if written {
            let ty = f.ty;
            let bound = quote_spanned!(ty.span()=> #ty: #p::KeyPart);
            where_clause.predicates.push(syn::parse_quote!(#bound));
        }
    }
    let writes = write_fields(t, p);
    quote! {
        impl #impl_generics #p::KeyPart for #name #ty_generics #where_clause {
            fn write_key(&self, __cachekit_out: &mut #p::KeyWriter<'_>) {
                #[allow(unused_mut)]
                let mut __cachekit_w = __cachekit_out;
                #writes
            }
        }

        impl #impl_generics #p::CacheKey for #name #ty_generics #where_clause {
            type Pattern = #pattern;
            fn pattern() -> #pattern {
                <#pattern as ::core::default::Default>::default()
            }
        }
    }
}

/// `{Name}Pattern`: one optional rendered value per placeholder.
fn pattern_builder(
    input: &DeriveInput,
    t: &TemplateLit,
    slots: &[Slot],
    p: &TokenStream,
) -> TokenStream {
    let name = &input.ident;
    let vis = &input.vis;
    let pattern = format_ident!("{}Pattern", name);
    let mut placeholders = t.template.placeholders();
    let build = t.template.segments.iter().map(|segment| match segment {
        Segment::Literal(text) => quote!(out.push_str(#text);),
        Segment::Placeholder(_) => {
            let path = placeholders.next().expect("one per placeholder segment");
            let slot = &slot_of(slots, path).setter;
            quote!(out.push_str(self.#slot.as_deref().unwrap_or("*"));)
        }
    });
    let build: Vec<TokenStream> = build.collect();
    let setters = slots.iter().map(|Slot { setter, .. }| {
        let doc = format!("Matches keys whose `{setter}` is `value`.");
        quote! {
            #[doc = #doc]
            pub fn #setter(mut self, value: impl #p::KeyPart) -> Self {
                let mut rendered = #p::String::new();
                value.write_key(&mut #p::KeyWriter::new(&mut rendered));
                self.#setter = ::core::option::Option::Some(rendered);
                self
            }
        }
    });
    let fields = slots.iter().map(|s| &s.setter);
    let doc = format!(
        "A pattern over [`{name}`] keys: fields left unset match anything (`*`). Build one with `{name}::pattern()`."
    );
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #vis struct #pattern {
            #(#fields: ::core::option::Option<#p::String>,)*
        }

        impl #pattern {
            #(#setters)*

            /// The glob pattern, for `cachekit::invalidate`.
            pub fn build(&self) -> #p::String {
                let mut out = #p::String::new();
                #(#build)*
                out
            }

            /// Deletes every key matching this pattern; returns how many.
            pub async fn invalidate(&self) -> ::core::result::Result<u64, #p::Error> {
                #p::invalidate_pattern_str(&self.build()).await
            }
        }

        impl ::core::fmt::Display for #pattern {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(&self.build())
            }
        }
    }
}
