use cachekit::cached;

struct Filter {
    kind: String,
}

#[cached(ttl = 5, key = "list:{f.knd}")]
async fn list(f: Filter) -> Vec<String> {
    vec![f.kind]
}

fn main() {}
