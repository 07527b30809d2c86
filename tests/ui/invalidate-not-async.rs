use cachekit::invalidate;

#[invalidate("user:{id}")]
fn save_user(id: u64) {
    let _ = id;
}

fn main() {}
