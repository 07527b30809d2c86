#[cachekit::test(flavor = "multi_thread", start_paused = true)]
async fn saves_a_user() {}

fn main() {}
