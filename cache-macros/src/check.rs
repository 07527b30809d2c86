//! Validation: what the parsed arguments require of the function (or
//! struct) they annotate. Nothing here generates code; each check reports
//! into the [`Errors`] and expansion only runs if there are none.

use syn::{FnArg, Ident, ItemFn, Pat, PatType, ReturnType};

use crate::attr::{AttrOption as _, CachedArgs, CachedOption, InvalidateArgs, TemplateLit};
use crate::errors::{Code, Errors};
use crate::func::{Params, Unownable, contains_impl_trait, owning};

/// What every annotated function must be: async (unless `sync` says a
/// plain `fn` may be, as `#[cached(scope = "process")]`'s), with a
/// nameable return type.
pub(crate) fn function(func: &ItemFn, attr: &str, sync: bool, errors: &mut Errors) {
    if func.sig.asyncness.is_none() && !sync {
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
    for (option, at) in args.given() {
        use CachedOption as O;
        let combined = match option {
            O::Lock => args.lock,
            O::Refresh => args.refresh_early,
            O::Scope => args.process,
            O::Stale
            | O::Tags
            | O::FailSafe
            | O::SoftTimeout
            | O::HardTimeout
            | O::CacheErr
            | O::Unless
            | O::TtlFrom
            | O::Jitter => true,
            _ => false,
        };
        if combined {
            errors.push(Code::BatchCombined.error(
                at,
                format!("`batch` cannot be combined with `{}`", option.name()),
            ));
        }
    }
    param
}

/// `#[cached]` on a plain `fn`: its entries stay in this process, and only
/// the options that need no task and no I/O apply.
pub(crate) fn sync(func: &ItemFn, args: &CachedArgs, errors: &mut Errors) {
    use CachedOption as O;
    if func.sig.asyncness.is_some() {
        return;
    }
    let name = &func.sig.ident;
    if !args.process {
        errors.push(Code::SyncWithoutProcess.error(
            func.sig.fn_token.span,
            format!(
                "#[cached] on a plain `fn` needs `scope = \"process\"`: a shared store needs I/O, which \
                 `{name}` cannot await. Write `#[cached(scope = \"process\", ...)]` to keep its entries in \
                 this process, or make it an `async fn`"
            ),
        ));
    }
    for (option, at) in args.given() {
        let why = match option {
            O::Stale | O::SoftTimeout => {
                "a sync function has no task to go on in while the caller is answered"
            }
            O::Refresh if args.refresh_early => "a sync function has no task to refresh in",
            O::HardTimeout => "a sync function cannot be abandoned while it runs",
            O::FailSafe | O::FailSafeThrottle => {
                "a sync function's entries keep no last good value past their TTL"
            }
            O::Batch => "a batch reads and writes a shared store",
            // With `scope = "process"`, the scope's own check reports these.
            O::Lock | O::LockTtl | O::Local | O::Codec | O::Compress if !args.process => {
                "its entries stay in this process, as values"
            }
            _ => continue,
        };
        errors.push(Code::SyncCombined.error(
            at,
            format!(
                "`{}` does not apply to a sync function: {why}",
                option.name()
            ),
        ));
    }
}

/// A computation that may run on its own task (with `stale`,
/// `refresh = "early"` or `soft_timeout`) is made from owned copies of the
/// arguments: each parameter must be one that can be owned.
pub(crate) fn owned(func: &ItemFn, args: &CachedArgs, errors: &mut Errors) {
    let Some((option, _)) = args.detached() else {
        return;
    };
    // A sync or batch function has its own errors for these options.
    if func.sig.asyncness.is_none() || args.batch.is_some() {
        return;
    }
    let option = option.name();
    let name = &func.sig.ident;
    for input in &func.sig.inputs {
        match owning(input) {
            Ok(_) => {}
            Err(Unownable::BorrowedSelf) => errors.push(Code::BorrowedReceiver.spanned(
                input,
                format!(
                    "`{option}` runs `{name}` on its own task, which cannot borrow `self`: take \
                     `self: Arc<Self>`, or make `Self` a cheap `Clone` handle (its state in an `Arc`) and take `self`"
                ),
            )),
            Err(why) => {
                let param = match input {
                    FnArg::Typed(t) => {
                        let pat = &t.pat;
                        quote::quote!(#pat).to_string()
                    }
                    FnArg::Receiver(_) => "self".to_owned(),
                };
                errors.push(Code::NotOwnable.spanned(
                    input,
                    format!(
                        "`{option}` runs `{name}` on its own task, which owns copies of the arguments, \
                         and `{param}` cannot be copied there: {}",
                        why.advice()
                    ),
                ));
            }
        }
    }
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
