//! Validation: what the parsed arguments require of the function (or
//! struct) they annotate. Nothing here generates code; each check reports
//! into the [`Errors`] and expansion only runs if there are none.

use syn::{FnArg, Ident, ItemFn, Pat, PatType, ReturnType};

use crate::attr::{CachedArgs, InvalidateArgs, TemplateLit};
use crate::errors::{Code, Errors};
use crate::func::{Params, contains_impl_trait};

/// What every annotated function must be.
pub(crate) fn function(func: &ItemFn, attr: &str, errors: &mut Errors) {
    if func.sig.asyncness.is_none() {
        errors.push(Code::NotAsync.error(
            func.sig.fn_token.span,
            format!("#[{attr}] applies to an `async fn`; make this function async"),
        ));
    }
    if let ReturnType::Type(_, ty) = &func.sig.output
        && contains_impl_trait(ty)
    {
        errors.push(Code::ImplTraitReturn.spanned(
            ty,
            format!(
                "#[{attr}] needs a nameable return type; `impl Trait` cannot be stored or restored"
            ),
        ));
    }
}

/// Checks that every placeholder of `t` names something `known` accepts;
/// `describe` says what there is.
pub(crate) fn placeholders(
    t: &TemplateLit,
    what: &str,
    known: impl Fn(&str) -> bool,
    describe: impl Fn() -> String,
    errors: &mut Errors,
) {
    for path in t.template.placeholders() {
        if !known(&path[0]) {
            errors.push(Code::UnknownPlaceholder.error(
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

/// The placeholders of a function's templates against its parameters.
fn templates_of<'t>(
    func: &ItemFn,
    params: &Params,
    templates: impl IntoIterator<Item = (&'t TemplateLit, &'static str)>,
    errors: &mut Errors,
) {
    let fn_name = func.sig.ident.to_string();
    let describe = || format!("`{fn_name}`: {}", params.describe());
    for (t, what) in templates {
        placeholders(t, what, |n| params.knows(n), describe, errors);
    }
}

/// `#[cached]`'s key and tags.
pub(crate) fn cached(func: &ItemFn, args: &CachedArgs, params: &Params, errors: &mut Errors) {
    let key = args.key.iter().map(|t| (t, "the key"));
    let tags = args.tags.iter().map(|t| (t, "a tag"));
    templates_of(func, params, key.chain(tags), errors);
}

/// The collection parameter of a batch function, after checking the
/// options that go with it.
pub(crate) fn batch<'f>(
    func: &'f ItemFn,
    args: &CachedArgs,
    ids: &Ident,
    errors: &mut Errors,
) -> Option<&'f PatType> {
    let param = func.sig.inputs.iter().find_map(|input| match input {
        FnArg::Typed(t) if matches!(&*t.pat, Pat::Ident(p) if p.ident == *ids) => Some(t),
        _ => None,
    });
    match (&param, &args.key) {
        (None, _) => errors.push(Code::BatchUnknownParam.error(
            ids.span(),
            format!(
                "`batch = {ids}`: `{}` has no parameter `{ids}` holding the ids",
                func.sig.ident
            ),
        )),
        (Some(_), Some(key)) if key.template.placeholders().any(|p| *ids == p[0]) => {}
        (Some(_), Some(key)) => errors.push(Code::BatchKeyWithoutIds.error(
            key.lit.span(),
            format!("the key of a batch function must use `{{{ids}}}`: each id gets its own entry"),
        )),
        (Some(_), None) => errors.push(Code::BatchWithoutKey.error(
            ids.span(),
            format!(
                "a batch function needs a key template using `{{{ids}}}`, e.g. `key = \"user:{{{ids}}}\"`"
            ),
        )),
    }
    for (set, option) in [
        (args.lock, "lock"),
        (args.stale_ms.is_some(), "stale"),
        (args.refresh_early, "refresh"),
        (!args.tags.is_empty(), "tags"),
    ] {
        if set {
            errors.push(Code::BatchCombined.error(
                ids.span(),
                format!("`batch` cannot be combined with `{option}`"),
            ));
        }
    }
    param
}

/// `#[invalidate]`'s templates, and that it invalidates something.
pub(crate) fn invalidate(
    func: &ItemFn,
    args: &InvalidateArgs,
    params: &Params,
    errors: &mut Errors,
) {
    let keys = args.keys.iter().map(|t| (t, "an invalidation template"));
    let tags = args.tags.iter().map(|t| (t, "a tag"));
    templates_of(func, params, keys.chain(tags), errors);
    if let Some((_, at)) = &args.within
        && args.keys.is_empty()
    {
        errors.push(Code::WithinWithoutTemplates.error(
            *at,
            "`within` resolves key templates and patterns in a namespace, and this #[invalidate] has none; \
             a typed target already carries its function's namespace",
        ));
    }
    let nothing = args.keys.is_empty()
        && args.entries.is_empty()
        && args.tags.is_empty()
        && args.namespaces.is_empty();
    if nothing && errors.is_empty() {
        errors.push(Code::InvalidateNothing.error(
            proc_macro2::Span::call_site(),
            "#[invalidate] needs something to invalidate: a cached function's entry (`get_user(id)`), \
             a key or pattern (`\"user:{id}\"`), `tags = [...]` or `namespace = \"...\"`",
        ));
    }
}
