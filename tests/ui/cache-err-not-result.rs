use cachekit::cached;

#[cached(ttl = 60, cache_err = "5s")]
async fn find_user(id: u64) -> Option<String> {
    (id == 1).then(|| "ada".to_owned())
}

struct NotFound;

// The whole result is stored: the error must be cloneable and serde too.
#[cached(ttl = 60, cache_err = "5s")]
async fn find_team(id: u64) -> Result<String, NotFound> {
    if id == 1 { Ok("core".to_owned()) } else { Err(NotFound) }
}

fn main() {}
