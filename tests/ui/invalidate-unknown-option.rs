use cachekit::invalidate;

#[invalidate("user:{id}", befor = true)]
async fn save(id: u64) {
    let _ = id;
}

fn main() {}
