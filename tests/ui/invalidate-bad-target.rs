use cachekit::invalidate;

#[invalidate(42)]
async fn save(id: u64) {
    let _ = id;
}

fn main() {}
