use cachekit::invalidate;

#[invalidate(tags = ["org:{org}"])]
async fn reorganize(org_id: u64) {
    let _ = org_id;
}

fn main() {}
