use cachekit::cached;

#[cached(ttl = 60, scope = "process", stale = "30s", refresh = "early", hard_timeout = "1s", fail_safe = "1h")]
fn parse_rules(source: &str) -> Vec<String> {
    source.lines().map(str::to_owned).collect()
}

fn main() {}
