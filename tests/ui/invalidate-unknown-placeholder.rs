use cachekit::invalidate;

#[invalidate("user:{user_id}", "users:page:*")]
async fn save_user(id: u64) -> Result<(), String> {
    let _ = id;
    Ok(())
}

fn main() {}
