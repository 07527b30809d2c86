//! Typed targets: free functions (here and through a module path), methods
//! through `Self` and through their type, generic functions, and arguments
//! kept for the body with `.clone()`.
#![deny(warnings)]

use cachekit::{cached, invalidate};

mod heroes {
    use cachekit::cached;

    #[cached(ttl = 60, namespace = "heroes", key = "hero:{id}")]
    pub async fn get_hero(id: u64) -> String {
        format!("hero {id}")
    }

    #[cached(ttl = 60, namespace = "heroes", key = "by-name:{name}")]
    pub async fn by_name(name: String) -> u64 {
        name.len() as u64
    }
}

#[cached(ttl = 60)]
async fn generic<T: cachekit::KeyPart + Send + Sync>(value: T) -> u64 {
    let _ = value;
    1
}

#[cached(ttl = 60, key = "local:{id}")]
async fn local(id: u64) -> u64 {
    id
}

#[invalidate(local(id), heroes::get_hero(id), heroes::by_name(name.clone()), generic::<u32>(7))]
async fn save_hero(id: u64, name: String) -> Result<(), String> {
    drop(name);
    Ok(())
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Repo {
    region: String,
}

impl Repo {
    #[cached(ttl = 60, key = "repo:{self.region}:{id}")]
    async fn find(&self, id: u64) -> u64 {
        id
    }

    #[cached(ttl = 60)]
    async fn load(id: u64) -> Option<Self> {
        Some(Repo { region: id.to_string() })
    }

    #[invalidate(Self::find(self, id), Repo::find(self, id + 1), Self::load(id))]
    async fn save(&self, id: u64) {
        let _ = (&self.region, id);
    }
}

trait Store {
    async fn get(&self, id: u64) -> u64;
}

impl Store for Repo {
    #[cached(ttl = 60, key = "store:{id}", namespace = "store", companions = false)]
    async fn get(&self, id: u64) -> u64 {
        id
    }
}

#[invalidate("store:{id}", within = "store")]
async fn save_store(id: u64) {
    let _ = id;
}

fn main() {
    let repo = Repo { region: "eu".into() };
    let _ = (save_hero(1, "Ada".into()), repo.save(1), repo.find(1), Repo::load(1), repo.get(1));
    let _ = (save_store(1), Repo::load_key(1));
}
