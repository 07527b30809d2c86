//! Codec size and time per value shape: JSON (the default) vs MessagePack
//! (`codec = "msgpack"`) vs JSON + LZ4 (`compress = true`, above 1 KiB),
//! through the envelope cachekit stores (what `redis-cli GET` would show).
//! Time is one encode plus one decode, as a store and a later hit pay.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cachekit::__private::{Envelope, Format, Meta};
use cachekit::Codec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[path = "../support/mod.rs"]
mod support;

use support::{Plan, Report, bytes, load_user, median, order, per_op, range, x};

/// A deterministic generator (xorshift), so every run encodes the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "cache",
    "latency",
    "request",
    "server",
    "value",
    "expiry",
    "invalidate",
    "namespace",
    "market",
    "order",
    "price",
    "customer",
    "account",
    "session",
    "token",
    "the",
    "a",
    "of",
    "and",
    "with",
    "without",
    "every",
    "process",
    "store",
    "read",
    "write",
    "fast",
    "slow",
    "replica",
    "primary",
    "cluster",
    "shard",
    "key",
    "tag",
    "version",
    "event",
    "message",
];

fn sentence(rng: &mut Rng, words: usize) -> String {
    (0..words)
        .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

/// A document of about 10 KB of JSON: prose, nested objects, numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Document {
    id: u64,
    title: String,
    author: Author,
    tags: Vec<String>,
    sections: Vec<Section>,
    published: bool,
    views: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Author {
    name: String,
    email: String,
    followers: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Section {
    heading: String,
    body: String,
    likes: u32,
}

/// One row of a 1,000-row list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    sku: String,
    name: String,
    price: f64,
    quantity: u32,
    active: bool,
}

fn document() -> Document {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut doc = Document {
        id: 42,
        title: sentence(&mut rng, 8),
        author: Author {
            name: "Ada Example".into(),
            email: "ada@example.com".into(),
            followers: 1_234,
        },
        tags: (0..8).map(|_| sentence(&mut rng, 1)).collect(),
        sections: Vec::new(),
        published: true,
        views: 98_765,
    };
    while serde_json::to_vec(&doc).expect("json").len() < 10_000 {
        doc.sections.push(Section {
            heading: sentence(&mut rng, 4),
            body: sentence(&mut rng, 60),
            likes: rng.below(1_000) as u32,
        });
    }
    doc
}

fn records() -> Vec<Record> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    (0..1_000)
        .map(|i| Record {
            id: 100_000 + i,
            sku: format!("SKU-{:06}", rng.below(1_000_000)),
            name: sentence(&mut rng, 3),
            price: rng.below(100_000) as f64 / 100.0,
            quantity: rng.below(500) as u32,
            active: rng.below(4) != 0,
        })
        .collect()
}

const FORMATS: [(&str, Format); 4] = [
    ("JSON", Format::JSON),
    (
        "MessagePack",
        Format {
            codec: Codec::MsgPack,
            compress_above: None,
        },
    ),
    (
        "JSON + LZ4",
        Format {
            codec: Codec::Json,
            compress_above: Some(1024),
        },
    ),
    (
        "MessagePack + LZ4",
        Format {
            codec: Codec::MsgPack,
            compress_above: Some(1024),
        },
    ),
];

fn round_trip<T: Serialize + DeserializeOwned + PartialEq>(
    envelope: &Envelope,
    value: &T,
    format: Format,
) -> usize {
    let raw = envelope
        .encode("bench:key", value, format, &Meta::NONE)
        .expect("encode");
    let back: T = envelope
        .decode("bench:key", &raw)
        .expect("decode")
        .value(format.codec)
        .expect("value");
    assert!(back == *value, "a round trip returns the value");
    raw.len()
}

/// Measures one shape; returns its rows.
fn shape<T: Serialize + DeserializeOwned + PartialEq>(
    plan: Plan,
    label: &str,
    value: &T,
    iterations: usize,
) -> Vec<Vec<String>> {
    let envelope = Envelope::default();
    let sizes: Vec<usize> = FORMATS
        .iter()
        .map(|(_, f)| round_trip(&envelope, value, *f))
        .collect();
    let iterations = plan.n(iterations);
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); FORMATS.len()];
    for round in 0..plan.rounds {
        for i in order(round, FORMATS.len()) {
            let format = FORMATS[i].1;
            let started = Instant::now();
            for _ in 0..iterations {
                let raw = envelope
                    .encode("bench:key", value, format, &Meta::NONE)
                    .expect("encode");
                let back: T = envelope
                    .decode("bench:key", black_box(&raw))
                    .expect("decode")
                    .value(format.codec)
                    .expect("value");
                black_box(back);
            }
            ns[i].push(started.elapsed().as_nanos() as f64 / iterations as f64);
        }
    }
    FORMATS
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let time_ratios: Vec<f64> = ns[i].iter().zip(&ns[0]).map(|(a, j)| a / j).collect();
            let (lo, hi) = range(&time_ratios);
            vec![
                label.to_owned(),
                (*name).to_owned(),
                bytes(sizes[i] as f64),
                x(sizes[i] as f64 / sizes[0] as f64),
                per_op(Duration::from_nanos(median(&ns[i]) as u64)),
                x(median(&time_ratios)),
                format!("{} – {}", x(lo), x(hi)),
            ]
        })
        .collect()
}

fn main() {
    let plan = Plan::from_env();
    let mut report = Report::start("codec", "Codecs: size and time per value shape", plan);
    let mut rows = shape(plan, "small struct", &load_user(7), 200_000);
    rows.extend(shape(plan, "10 KB document", &document(), 10_000));
    rows.extend(shape(plan, "1,000 records", &records(), 1_000));
    report.text(
        "Each value is framed by cachekit's envelope exactly as it is stored (JSON bare; other formats behind a 4-byte header). \
         LZ4 applies at 1 KiB and above (`compress = true`), so the small struct is stored uncompressed either way. \
         Time is one encode plus one decode on one core, as a store and a later hit pay; ratios are to JSON of the same shape, measured in the same rounds.",
    );
    report.table(
        &[
            "value",
            "format",
            "stored size",
            "size ÷ JSON",
            "encode + decode",
            "time ÷ JSON",
            "time ratio range",
        ],
        &rows,
    );
    report.finish();
}
