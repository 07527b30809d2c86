//! `#[derive(CacheKey)]`: a struct as a typed cache key.
//!
//! The struct implements `KeyPart` (so it can be a placeholder) and
//! `CacheKey`, and gets a pattern builder, `{Name}Pattern`, whose unset
//! fields are wildcards.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields, Ident};

use crate::attr::{TemplateLit, cache_key_template, field_skip};
use crate::errors::Errors;
use crate::expand::{check_fields, runtime_path, write_fields_template};
use crate::template::{Segment, Template};

struct Field {
    /// The name in templates: the field name, or its index.
    name: String,
    skip: bool,
}

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "#[derive(CacheKey)] supports structs; for an enum, implement `cachekit::KeyPart` by hand",
        ));
    };
    let mut template: Option<TemplateLit> = None;
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cache_key"))
    {
        if template.is_some() {
            errors.push(syn::Error::new_spanned(
                attr,
                "duplicate `#[cache_key(...)]`",
            ));
        }
        template = cache_key_template(attr, &mut errors).or(template);
    }
    let fields: Vec<Field> = match &data.fields {
        Fields::Named(named) => named
            .named
            .iter()
            .map(|f| Field {
                name: f.ident.as_ref().expect("named").to_string(),
                skip: skipped(f, &mut errors),
            })
            .collect(),
        Fields::Unnamed(unnamed) => unnamed
            .unnamed
            .iter()
            .enumerate()
            .map(|(i, f)| Field {
                name: i.to_string(),
                skip: skipped(f, &mut errors),
            })
            .collect(),
        Fields::Unit => Vec::new(),
    };
    let type_name = input.ident.to_string();
    let template = match template {
        Some(t) => {
            let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
            check_fields(&t, &names, &type_name, &mut errors);
            for path in t.template.placeholders() {
                if fields.iter().any(|f| f.skip && f.name == path[0]) {
                    errors.push(syn::Error::new(
                        t.lit.span(),
                        format!(
                            "field `{}` is marked `#[cache_key(skip)]` but the template uses it",
                            path[0]
                        ),
                    ));
                }
            }
            t
        }
        None => {
            // The type's name and every field, in order.
            let mut source = type_name.clone();
            for f in fields.iter().filter(|f| !f.skip) {
                source.push_str(&format!(":{{{}}}", f.name));
            }
            let template = Template::parse(&source).map_err(|e| {
                syn::Error::new(
                    input.ident.span(),
                    format!(
                        "cannot derive a key for `{type_name}`: {e}; add `#[cache_key(\"...\")]`"
                    ),
                )
            })?;
            TemplateLit {
                lit: syn::LitStr::new(&source, input.ident.span()),
                template,
            }
        }
    };
    errors.finish()?;

    let p = runtime_path();
    let name = &input.ident;
    let vis = &input.vis;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut where_clause = where_clause
        .cloned()
        .unwrap_or_else(|| syn::parse_quote!(where));
    for field in data.fields.iter() {
        let ty = &field.ty;
        where_clause
            .predicates
            .push(syn::parse_quote!(#ty: #p::KeyPart));
    }
    let writes = write_fields_template(&template, &p);

    // The pattern builder: one optional rendered value per placeholder.
    let pattern = format_ident!("{}Pattern", name);
    let placeholders: Vec<&[String]> = template.template.placeholders().collect();
    let slots: Vec<Ident> = placeholders
        .iter()
        .map(|path| {
            let joined = path.join("_");
            let joined = if joined.starts_with(|c: char| c.is_ascii_digit()) {
                format!("field_{joined}")
            } else {
                joined
            };
            Ident::new(&joined, Span::call_site())
        })
        .collect();
    let mut unique: Vec<Ident> = Vec::new();
    for s in &slots {
        if !unique.contains(s) {
            unique.push(s.clone());
        }
    }
    let mut slot_index = 0;
    let build = template
        .template
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Literal(text) => quote!(out.push_str(#text);),
            Segment::Placeholder(_) => {
                let slot = &slots[slot_index];
                slot_index += 1;
                quote!(out.push_str(self.#slot.as_deref().unwrap_or("*"));)
            }
        });
    let pattern_doc = format!(
        "A pattern over [`{name}`] keys: fields left unset match anything (`*`). Build one with `{name}::pattern()`."
    );
    let setters = unique.iter().map(|slot| {
        let doc = format!("Matches keys whose `{slot}` is `value`.");
        quote! {
            #[doc = #doc]
            pub fn #slot(mut self, value: impl #p::KeyPart) -> Self {
                let mut rendered = #p::String::new();
                value.write_key(&mut #p::KeyWriter::new(&mut rendered));
                self.#slot = ::core::option::Option::Some(rendered);
                self
            }
        }
    });

    Ok(quote! {
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

        #[doc = #pattern_doc]
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #vis struct #pattern {
            #(#unique: ::core::option::Option<#p::String>,)*
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
    })
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
