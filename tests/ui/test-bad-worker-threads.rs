#[cachekit::test(flavor = "multi_thread", worker_threads = 0)]
async fn saves_a_user() {}

fn main() {}
