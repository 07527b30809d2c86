//! Expansion of the test support: `#[cachekit::test]` and
//! `assert_cached!` / `assert_not_cached!`.
//!
//! `#[cachekit::test]` is `#[tokio::test]` (the same options, after
//! `tokio-macros`' `entry.rs`) whose test gets its own empty cache: the
//! generated `#[test]` hands its body to one runtime function,
//! `__private::run_test`, which builds the runtime, installs the cache for
//! it, runs the body and cleans up, panic or not.
//!
//! `assert_cached!(get_user(7))` calls the hidden entry `#[cached]` makes
//! beside `get_user` (as a typed `#[invalidate]` target does, through the
//! same rewrite) and asks the runtime whether a call would hit.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

use crate::attr::{AssertArgs, TestArgs};
use crate::check;
use crate::errors::Errors;
use crate::func::{fail_soft, parse_fn, runtime};
use crate::invalidate::entry_call;

/// `#[cachekit::test(...)]`.
pub(crate) fn expand_test(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match parse_fn(&item, "cachekit::test") {
        Ok(f) => f,
        Err(out) => return out,
    };
    let mut errors = Errors::default();
    let args = TestArgs::parse(args, &mut errors);
    check::function(&func, "cachekit::test", false, &mut errors);
    if let Err(e) = errors.finish() {
        // Still a test, so that the rest of the file has no "unused"
        // warnings on top of the error (as tokio does).
        let item = quote!(#[::core::prelude::v1::test] #item);
        return fail_soft(item, e);
    }
    let p = runtime(args.krate.as_ref());
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &func;
    let mut sig = sig.clone();
    sig.asyncness = None;
    let TestArgs {
        multi_thread,
        worker_threads,
        start_paused,
        redis,
        redis_url,
        ..
    } = args;
    let redis_url = match redis_url {
        Some(url) => {
            quote!(::core::option::Option::Some(::std::string::ToString::to_string(&(#url))))
        }
        None => quote!(::core::option::Option::None),
    };
    let worker_threads = match worker_threads {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis #sig {
            #p::run_test(
                #p::TestRuntime {
                    multi_thread: #multi_thread,
                    worker_threads: #worker_threads,
                    start_paused: #start_paused,
                    redis: #redis,
                    redis_url: #redis_url,
                },
                async #block,
            )
        }
    }
}

/// `assert_cached!(call)` (`cached = true`) or `assert_not_cached!(call)`.
pub(crate) fn expand_assert(input: TokenStream, cached: bool) -> TokenStream {
    let name = if cached {
        "assert_cached"
    } else {
        "assert_not_cached"
    };
    let mut errors = Errors::default();
    let args = AssertArgs::parse(input, name, &mut errors);
    let args = match (args, errors.finish()) {
        (Some(args), Ok(())) => args,
        (_, Err(e)) => return e.to_compile_error(),
        (None, Ok(())) => unreachable!("a failed parse is reported"),
    };
    let p = runtime(None);
    let (call, fallback) = entry_call(&args.target, 0, &p);
    let shown = quote::ToTokens::to_token_stream(&args.target.call).to_string();
    let what = if cached {
        "would not hit: its entry is absent, expired or being computed"
    } else {
        "would hit: its entry is cached"
    };
    let template =
        format!("assertion failed: `{name}!({{}})`: the call {what} (key `{{}}` of `{{}}`)");
    let message = match &args.message {
        Some(m) => quote!(
            ::core::panic!(::core::concat!(#template, ": {}"), #shown, __cachekit_key, __cachekit_name, ::core::format_args!(#m))
        ),
        None => quote!(::core::panic!(#template, #shown, __cachekit_key, __cachekit_name)),
    };
    let negate = if cached { quote!(!) } else { quote!() };
    quote! {{
        #fallback
        let __cachekit_entry: #p::Entry = #call;
        let __cachekit_key = ::core::clone::Clone::clone(&__cachekit_entry.key);
        let __cachekit_name = __cachekit_entry.site.name();
        if #negate #p::is_cached(__cachekit_entry).await {
            #message
        }
    }}
}
