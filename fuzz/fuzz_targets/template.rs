//! The key-template parser of `cachekit-macros` on arbitrary input: it never
//! panics, its error ranges lie within the input on character boundaries,
//! what it accepts round-trips through `Template::to_source`, and every
//! placeholder segment is something the macros can turn into tokens.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../cache-macros/src/template.rs"]
#[allow(dead_code)]
mod template;

use template::{Segment, Template};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match Template::parse(source) {
        Ok(parsed) => {
            let again = Template::parse(&parsed.to_source())
                .unwrap_or_else(|e| panic!("to_source of {source:?} does not parse: {e}"));
            assert_eq!(again, parsed, "round trip of {source:?}");
            for segment in &parsed.segments {
                match segment {
                    Segment::Literal(text) => assert!(!text.is_empty()),
                    Segment::Placeholder(path) => {
                        assert!(!path.is_empty());
                        // The macros do exactly this with each segment.
                        for (n, part) in path.iter().enumerate() {
                            match part.parse::<u32>() {
                                Ok(_) if n > 0 => {}
                                _ => {
                                    let _ = proc_macro2::Ident::new(
                                        part,
                                        proc_macro2::Span::call_site(),
                                    );
                                }
                            }
                        }
                    }
                }
            }
            // No two literals in a row: the parser merges them.
            for pair in parsed.segments.windows(2) {
                assert!(
                    !matches!(pair, [Segment::Literal(_), Segment::Literal(_)]),
                    "{source:?}"
                );
            }
        }
        Err(e) => {
            assert!(e.at.start <= e.at.end && e.at.end <= source.len(), "{e:?}");
            assert!(source.is_char_boundary(e.at.start) && source.is_char_boundary(e.at.end));
            assert!(!e.message.is_empty());
        }
    }
});
