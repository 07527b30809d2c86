use cachekit::{CacheKey, KeyPart, KeyWriter};

struct Region {
    code: String,
}

impl KeyPart for Region {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.text(&self.code);
    }
}

#[derive(CacheKey)]
#[cache_key("shop:{region.code}:{region_code}")]
struct Shop {
    region: Region,
    region_code: String,
}

fn main() {}
