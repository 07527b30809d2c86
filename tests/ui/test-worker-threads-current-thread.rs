#[cachekit::test(worker_threads = 2)]
async fn saves_a_user() {}

fn main() {}
