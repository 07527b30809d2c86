use cachekit::invalidate;

#[invalidate("user:[0-9]*")]
async fn save(id: u64) {
    let _ = id;
}

fn main() {}
