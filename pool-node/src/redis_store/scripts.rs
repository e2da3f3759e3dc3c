//! The Lua scripts of the redis store, each with the shared prelude in front.

use redis::Script;

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// Every script, loaded once; `redis::Script` runs EVALSHA and loads on NOSCRIPT.
pub(super) struct Scripts {
    pub post: Script,
    pub list: Script,
    pub get: Script,
    pub delete: Script,
    pub pop: Script,
    pub claim_create: Script,
    pub dead_letter_put: Script,
    pub claim_get: Script,
    pub claim_update: Script,
    pub claim_delete: Script,
    pub stats: Script,
    pub expired: Script,
    pub purge: Script,
    pub migrate: Script,
    pub migrate_bytes: Script,
    pub set_meta: Script,
    pub sub_create: Script,
    pub sub_list: Script,
    pub sub_get: Script,
    pub sub_update: Script,
    pub sub_delete: Script,
    pub sub_purge: Script,
    pub sub_cursor: Script,
    pub sub_lease: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            post: script(include_str!("lua/post.lua")),
            list: script(include_str!("lua/list.lua")),
            get: script(include_str!("lua/get.lua")),
            delete: script(include_str!("lua/delete.lua")),
            pop: script(include_str!("lua/pop.lua")),
            claim_create: script(include_str!("lua/claim_create.lua")),
            dead_letter_put: script(include_str!("lua/dead_letter_put.lua")),
            claim_get: script(include_str!("lua/claim_get.lua")),
            claim_update: script(include_str!("lua/claim_update.lua")),
            claim_delete: script(include_str!("lua/claim_delete.lua")),
            stats: script(include_str!("lua/stats.lua")),
            expired: script(include_str!("lua/expired.lua")),
            purge: script(include_str!("lua/purge.lua")),
            migrate: script(include_str!("lua/migrate.lua")),
            migrate_bytes: script(include_str!("lua/migrate_bytes.lua")),
            set_meta: script(include_str!("lua/set_meta.lua")),
            sub_create: script(include_str!("lua/sub_create.lua")),
            sub_list: script(include_str!("lua/sub_list.lua")),
            sub_get: script(include_str!("lua/sub_get.lua")),
            sub_update: script(include_str!("lua/sub_update.lua")),
            sub_delete: script(include_str!("lua/sub_delete.lua")),
            sub_purge: script(include_str!("lua/sub_purge.lua")),
            sub_cursor: script(include_str!("lua/sub_cursor.lua")),
            sub_lease: script(include_str!("lua/sub_lease.lua")),
        }
    }
}
