#[cachekit::test(flavor = "single_thread")]
async fn saves_a_user() {}

fn main() {}
