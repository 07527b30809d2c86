#[cachekit::test(postgres)]
async fn saves_a_user() {}

fn main() {}
