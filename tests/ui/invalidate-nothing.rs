use cachekit::invalidate;

#[invalidate(before = true)]
async fn save(id: u64) {
    let _ = id;
}

fn main() {}
