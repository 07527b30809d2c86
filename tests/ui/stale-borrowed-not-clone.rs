use cachekit::cached;

struct Connection {
    region: String,
}

#[cached(ttl = 60, stale = "30s", key = "region:{id}")]
async fn region(conn: &Connection, id: u64) -> String {
    format!("{}/{id}", conn.region)
}

fn main() {}
