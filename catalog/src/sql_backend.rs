//! The SQL `CatalogBackend`: SQLite (`sqlite://path`) or PostgreSQL (`postgres://...`)
//! through sqlx, with the same SQL text on both.
//!
//! Placement is a single `INSERT ... ON CONFLICT DO NOTHING` on the `(project, queue)`
//! primary key followed by a read, so concurrent placements of one queue from several
//! api-nodes (or catalog processes sharing a PostgreSQL) agree on one winner.
//!
//! A pool is removed by one `DELETE ... WHERE NOT EXISTS (placement on it)`. On SQLite
//! writes are serialized, so no placement can slip in between; on PostgreSQL (read
//! committed) a placement racing the removal of its pool in the same instant could
//! still commit; remove a pool after setting its weight to 0 and checking it is empty.
//!
//! The change feed ([`CatalogBackend::watch`]) carries the writes made through this
//! process and, on PostgreSQL, those made through the other catalog processes sharing
//! the database (`LISTEN`/`NOTIFY`, see `sql_feed.rs`). A SQLite catalog is one
//! process's file.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use zaqar_proto::uri::CatalogKind;
use zaqar_proto::ZaqarError;

use crate::backend::{CatalogBackend, CatalogResult};
use crate::model::{
    flavor_not_found, pool_in_use, project_limits_not_found, validate_flavor_name,
    validate_listing, validate_pool_name, validate_project, validate_queue, FlavorSpec, ListQueues,
    Placement, PoolSpec, ProjectLimitsSpec, QueuePage,
};
use crate::sql_feed::{PgFeed, PoolRead};
use crate::watch::{CatalogEvent, EventHub, Watch};

/// How long a call waits for a free connection before the store counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The catalog in an SQL database.
pub struct SqlCatalog {
    db: Db,
    /// The writes made through this process, and on PostgreSQL through the others.
    events: EventHub,
    /// PostgreSQL: the feed shared with the other catalog processes.
    feed: Option<PgFeed>,
}

enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool: one copy of the code per
/// database, the same SQL text for both.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// The tables; `{name}` is the type of sorted name columns (byte order on both).
const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS catalog_pools (
        name {name} PRIMARY KEY,
        weight BIGINT NOT NULL,
        pool_group TEXT NOT NULL,
        uri TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        options_json TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS catalog_placements (
        project {name} NOT NULL,
        queue {name} NOT NULL,
        pool TEXT NOT NULL,
        PRIMARY KEY (project, queue)
    )",
    "CREATE TABLE IF NOT EXISTS catalog_flavors (
        name {name} PRIMARY KEY,
        capabilities_json TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS catalog_project_limits (
        project {name} PRIMARY KEY,
        limits_json TEXT NOT NULL
    )",
];

const UPSERT_PROJECT_LIMITS: &str =
    "INSERT INTO catalog_project_limits (project, limits_json) VALUES ($1, $2)
    ON CONFLICT (project) DO UPDATE SET limits_json = excluded.limits_json";

const PROJECT_LIMITS_COLUMNS: &str = "SELECT project, limits_json FROM catalog_project_limits";

const REMOVE_PROJECT_LIMITS: &str = "DELETE FROM catalog_project_limits WHERE project = $1";

const UPSERT_FLAVOR: &str = "INSERT INTO catalog_flavors (name, capabilities_json) VALUES ($1, $2)
    ON CONFLICT (name) DO UPDATE SET capabilities_json = excluded.capabilities_json";

const FLAVOR_COLUMNS: &str = "SELECT name, capabilities_json FROM catalog_flavors";

const REMOVE_FLAVOR: &str = "DELETE FROM catalog_flavors WHERE name = $1";

const UPSERT_POOL: &str =
    "INSERT INTO catalog_pools (name, weight, pool_group, uri, endpoint, options_json)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (name) DO UPDATE SET weight = excluded.weight, pool_group = excluded.pool_group,
        uri = excluded.uri, endpoint = excluded.endpoint, options_json = excluded.options_json";

/// A pool-node's registration: a new pool whole, an existing one's URI and endpoint.
const REGISTER_POOL_NODE: &str =
    "INSERT INTO catalog_pools (name, weight, pool_group, uri, endpoint, options_json)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (name) DO UPDATE SET uri = excluded.uri, endpoint = excluded.endpoint";

const POOL_COLUMNS: &str =
    "SELECT name, weight, pool_group, uri, endpoint, options_json FROM catalog_pools";

const LOOKUP: &str = "SELECT p.pool, COALESCE(pl.endpoint, '') FROM catalog_placements p
    LEFT JOIN catalog_pools pl ON pl.name = p.pool
    WHERE p.project = $1 AND p.queue = $2";

/// The `WHERE` of the conditional insert keeps SQLite's parser from reading
/// `ON CONFLICT` as part of a join, and makes an unknown pool insert nothing.
const PLACE_IF_ABSENT: &str = "INSERT INTO catalog_placements (project, queue, pool)
    SELECT $1, $2, name FROM catalog_pools WHERE name = $3
    ON CONFLICT (project, queue) DO NOTHING";

const REMOVE_POOL: &str = "DELETE FROM catalog_pools WHERE name = $1
    AND NOT EXISTS (SELECT 1 FROM catalog_placements WHERE pool = $1)";

const COUNT_ON_POOL: &str = "SELECT COUNT(*) FROM catalog_placements WHERE pool = $1";

const REMOVE: &str = "DELETE FROM catalog_placements WHERE project = $1 AND queue = $2";

/// `$3` is the name filter; `{contains}` tests it against `p.queue`.
const LIST_QUEUES: &str =
    "SELECT p.queue, p.pool, COALESCE(pl.endpoint, '') FROM catalog_placements p
    LEFT JOIN catalog_pools pl ON pl.name = p.pool
    WHERE p.project = $1 AND p.queue > $2 AND ($3 = '' OR {contains})
    ORDER BY p.queue LIMIT $4";

const COUNT_QUEUES: &str = "SELECT COUNT(*) FROM catalog_placements p
    WHERE p.project = $1 AND ($2 = '' OR {contains})";

type PoolRow = (String, i64, String, String, String, String);

/// A row of two text columns (a flavor, project limits, a placement's pool and endpoint).
type TextPair = (String, String);

impl SqlCatalog {
    /// Opens (creating if needed) the catalog at `uri`: `sqlite://path/to/file.db`
    /// (parent directories are created) or `postgres://user@host:port/database`.
    pub async fn open(uri: &str) -> Result<SqlCatalog, ZaqarError> {
        let kind = CatalogKind::of(uri)?;
        let db = if kind == CatalogKind::Sqlite {
            Db::Sqlite(open_sqlite(uri).await?)
        } else if kind == CatalogKind::Postgres {
            Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect(uri)
                    .await
                    .map_err(open_error)?,
            )
        } else {
            return Err(ZaqarError::bad_request(format!(
                "not an SQL catalog URI: {:?} (sqlite:// or postgres://)",
                zaqar_proto::uri::redact(uri)
            )));
        };
        let mut catalog = SqlCatalog {
            db,
            events: EventHub::default(),
            feed: None,
        };
        catalog.create_schema().await?;
        if let Db::Postgres(db) = &catalog.db {
            let feed = PgFeed::start(db, catalog.events.clone(), read_pool)
                .await
                .map_err(open_error)?;
            catalog.feed = Some(feed);
        }
        Ok(catalog)
    }

    /// Announces `event` to every catalog process of the database, this one
    /// included: all their watchers then hear the writes of all processes in one
    /// order, the order of the announcements. Without a feed (SQLite), or when the
    /// announcement fails, this process's watchers hear it at once.
    async fn announce(&self, event: CatalogEvent) {
        if let (Db::Postgres(db), Some(feed)) = (&self.db, &self.feed) {
            if feed.announce(db, &event).await {
                return;
            }
        }
        self.events.publish(event);
    }

    async fn create_schema(&self) -> CatalogResult<()> {
        match &self.db {
            Db::Sqlite(pool) => {
                for statement in SCHEMA {
                    sqlx::query(&statement.replace("{name}", "TEXT"))
                        .execute(pool)
                        .await
                        .map_err(store_error)?;
                }
            }
            Db::Postgres(pool) => {
                // Catalog processes starting together must not race on CREATE TABLE.
                let mut tx = pool.begin().await.map_err(store_error)?;
                sqlx::query("SELECT pg_advisory_xact_lock(7243002)")
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
                for statement in SCHEMA {
                    sqlx::query(&statement.replace("{name}", "TEXT COLLATE \"C\""))
                        .execute(&mut *tx)
                        .await
                        .map_err(store_error)?;
                }
                tx.commit().await.map_err(store_error)?;
            }
        }
        Ok(())
    }

    /// `SQL` with `{contains}` replaced by this database's "`p.queue` contains `$n`".
    fn with_contains(&self, sql: &str, param: u8) -> String {
        let function = match self.db {
            Db::Sqlite(_) => "instr",
            Db::Postgres(_) => "strpos",
        };
        sql.replace("{contains}", &format!("{function}(p.queue, ${param}) > 0"))
    }

    /// Runs `sql` with `binds` (its text parameters, in order); the rows it changed.
    async fn execute<'q>(&self, sql: &'q str, binds: &[&'q str]) -> CatalogResult<u64> {
        on_db!(&self.db, db => binds
            .iter()
            .fold(sqlx::query(sql), |query, value| query.bind(*value))
            .execute(db)
            .await
            .map(|done| done.rows_affected()))
        .map_err(store_error)
    }

    /// Runs `sql` (an upsert of the pools table) with the fields of `pool`.
    async fn write_pool(&self, sql: &str, pool: &PoolSpec) -> CatalogResult<()> {
        on_db!(&self.db, db => sqlx::query(sql)
            .bind(&pool.name)
            .bind(i64::from(pool.weight))
            .bind(&pool.flavor)
            .bind(&pool.uri)
            .bind(&pool.endpoint)
            .bind(&pool.options_json)
            .execute(db)
            .await
            .map(drop))
        .map_err(store_error)
    }

    /// The rows of two text columns that `sql` selects with `binds`.
    async fn pairs<'q>(&self, sql: &'q str, binds: &[&'q str]) -> CatalogResult<Vec<TextPair>> {
        on_db!(&self.db, db => binds
            .iter()
            .fold(sqlx::query_as(sql), |query, value| query.bind(*value))
            .fetch_all(db)
            .await)
        .map_err(store_error)
    }

    /// The one row of two text columns that `sql` selects with `binds`, if any.
    async fn pair<'q>(&self, sql: &'q str, binds: &[&'q str]) -> CatalogResult<Option<TextPair>> {
        on_db!(&self.db, db => binds
            .iter()
            .fold(sqlx::query_as(sql), |query, value| query.bind(*value))
            .fetch_optional(db)
            .await)
        .map_err(store_error)
    }
}

async fn open_sqlite(uri: &str) -> Result<SqlitePool, ZaqarError> {
    let options = SqliteConnectOptions::from_str(uri)
        .map_err(open_error)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(ACQUIRE_TIMEOUT);
    if let Some(parent) = options.get_filename().parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|err| {
                ZaqarError::unavailable(format!(
                    "cannot create the catalog directory {}: {err}",
                    parent.display()
                ))
            })?;
        }
    }
    SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(open_error)
}

/// A failure while opening: a malformed URI is the caller's mistake, the rest is the store.
fn open_error(err: sqlx::Error) -> ZaqarError {
    match err {
        sqlx::Error::Configuration(err) => {
            ZaqarError::bad_request(format!("invalid catalog URI: {err}"))
        }
        err => store_error(err),
    }
}

/// A failure of the database: unreachable, busy or failing stores are `unavailable`
/// (safe to retry); rows that do not decode are our bug.
fn store_error(err: sqlx::Error) -> ZaqarError {
    match err {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => {
            ZaqarError::internal(format!("unexpected catalog row: {err}"))
        }
        err => ZaqarError::unavailable(format!("the catalog store failed: {err}")),
    }
}

/// A pool read back for the feed (`sql_feed.rs`).
fn read_pool(db: PgPool, name: String) -> PoolRead {
    Box::pin(async move {
        let sql = format!("{POOL_COLUMNS} WHERE name = $1");
        let row: Option<PoolRow> = sqlx::query_as(&sql).bind(name).fetch_optional(&db).await?;
        Ok(row.map(pool_from_row))
    })
}

fn pool_from_row((name, weight, flavor, uri, endpoint, options_json): PoolRow) -> PoolSpec {
    PoolSpec {
        name,
        // Written from a u32; anything else would be a foreign edit of the table.
        weight: u32::try_from(weight).unwrap_or(0),
        flavor,
        uri,
        endpoint,
        options_json,
    }
}

fn flavor_from_row((name, capabilities_json): (String, String)) -> CatalogResult<FlavorSpec> {
    let capabilities = serde_json::from_str(&capabilities_json).map_err(|err| {
        ZaqarError::internal(format!("unexpected capabilities of flavor {name:?}: {err}"))
    })?;
    Ok(FlavorSpec { name, capabilities })
}

fn project_limits_from_row((project, limits_json): (String, String)) -> ProjectLimitsSpec {
    ProjectLimitsSpec {
        project,
        limits_json,
    }
}

#[async_trait]
impl CatalogBackend for SqlCatalog {
    async fn put_flavor(&self, flavor: FlavorSpec) -> CatalogResult<()> {
        let flavor = flavor.validated()?;
        let capabilities = serde_json::to_string(&flavor.capabilities)
            .map_err(|err| ZaqarError::internal(format!("capabilities to JSON: {err}")))?;
        self.execute(UPSERT_FLAVOR, &[&flavor.name, &capabilities])
            .await
            .map(drop)
    }

    async fn get_flavor(&self, name: &str) -> CatalogResult<FlavorSpec> {
        validate_flavor_name(name)?;
        let sql = format!("{FLAVOR_COLUMNS} WHERE name = $1");
        match self.pair(&sql, &[name]).await? {
            Some(row) => flavor_from_row(row),
            None => Err(flavor_not_found(name)),
        }
    }

    async fn list_flavors(&self) -> CatalogResult<Vec<FlavorSpec>> {
        let sql = format!("{FLAVOR_COLUMNS} ORDER BY name");
        let rows = self.pairs(&sql, &[]).await?;
        rows.into_iter().map(flavor_from_row).collect()
    }

    async fn remove_flavor(&self, name: &str) -> CatalogResult<()> {
        validate_flavor_name(name)?;
        if self.execute(REMOVE_FLAVOR, &[name]).await? == 0 {
            return Err(flavor_not_found(name));
        }
        Ok(())
    }

    async fn put_project_limits(&self, limits: ProjectLimitsSpec) -> CatalogResult<()> {
        let limits = limits.validated()?;
        let binds = [limits.project.as_str(), &limits.limits_json];
        self.execute(UPSERT_PROJECT_LIMITS, &binds).await.map(drop)
    }

    async fn get_project_limits(&self, project: &str) -> CatalogResult<Option<ProjectLimitsSpec>> {
        validate_project(project)?;
        let sql = format!("{PROJECT_LIMITS_COLUMNS} WHERE project = $1");
        let row = self.pair(&sql, &[project]).await?;
        Ok(row.map(project_limits_from_row))
    }

    async fn list_project_limits(&self) -> CatalogResult<Vec<ProjectLimitsSpec>> {
        let sql = format!("{PROJECT_LIMITS_COLUMNS} ORDER BY project");
        let rows = self.pairs(&sql, &[]).await?;
        Ok(rows.into_iter().map(project_limits_from_row).collect())
    }

    async fn remove_project_limits(&self, project: &str) -> CatalogResult<()> {
        validate_project(project)?;
        if self.execute(REMOVE_PROJECT_LIMITS, &[project]).await? == 0 {
            return Err(project_limits_not_found(project));
        }
        Ok(())
    }

    async fn add_pool(&self, pool: PoolSpec) -> CatalogResult<()> {
        let pool = pool.validated()?;
        self.write_pool(UPSERT_POOL, &pool).await?;
        tracing::info!(pool = %pool.name, weight = pool.weight, flavor = %pool.flavor,
            endpoint = %pool.endpoint, "pool registered");
        self.announce(CatalogEvent::PoolChanged(pool)).await;
        Ok(())
    }

    async fn register_pool(&self, pool: PoolSpec) -> CatalogResult<PoolSpec> {
        let pool = pool.validated()?;
        self.write_pool(REGISTER_POOL_NODE, &pool).await?;
        let stored = self.get_pool(&pool.name).await?;
        tracing::info!(pool = %stored.name, weight = stored.weight, flavor = %stored.flavor,
            endpoint = %stored.endpoint, "pool-node registered");
        self.announce(CatalogEvent::PoolChanged(stored.clone()))
            .await;
        Ok(stored)
    }

    fn watch(&self) -> CatalogResult<Watch> {
        Ok(self.events.subscribe())
    }

    async fn remove_pool(&self, name: &str) -> CatalogResult<()> {
        validate_pool_name(name)?;
        if self.execute(REMOVE_POOL, &[name]).await? > 0 {
            tracing::info!(pool = %name, "pool removed");
            self.announce(CatalogEvent::PoolRemoved(name.to_string()))
                .await;
            return Ok(());
        }
        self.get_pool(name).await?;
        let (count,): (i64,) = on_db!(&self.db, db => sqlx::query_as(COUNT_ON_POOL)
            .bind(name)
            .fetch_one(db)
            .await)
        .map_err(store_error)?;
        Err(pool_in_use(name, u64::try_from(count).unwrap_or(0)))
    }

    async fn list_pools(&self) -> CatalogResult<Vec<PoolSpec>> {
        let sql = format!("{POOL_COLUMNS} ORDER BY name");
        let rows: Vec<PoolRow> = on_db!(&self.db, db => sqlx::query_as(&sql).fetch_all(db).await)
            .map_err(store_error)?;
        Ok(rows.into_iter().map(pool_from_row).collect())
    }

    async fn get_pool(&self, name: &str) -> CatalogResult<PoolSpec> {
        let sql = format!("{POOL_COLUMNS} WHERE name = $1");
        let row: Option<PoolRow> = on_db!(&self.db, db => sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(db)
            .await)
        .map_err(store_error)?;
        row.map(pool_from_row)
            .ok_or_else(|| ZaqarError::not_found(format!("pool {name:?} does not exist")))
    }

    async fn lookup(&self, project: &str, queue: &str) -> CatalogResult<Option<Placement>> {
        validate_queue(project, queue)?;
        let row = self.pair(LOOKUP, &[project, queue]).await?;
        Ok(row.map(|(pool, endpoint)| Placement::new(project, queue, pool, endpoint)))
    }

    async fn place_on(&self, project: &str, queue: &str, pool: &str) -> CatalogResult<Placement> {
        validate_queue(project, queue)?;
        let inserted = self
            .execute(PLACE_IF_ABSENT, &[project, queue, pool])
            .await?;
        match self.lookup(project, queue).await? {
            Some(placement) => {
                if inserted > 0 {
                    self.announce(CatalogEvent::Placed {
                        project: project.to_string(),
                        queue: queue.to_string(),
                        pool: placement.pool.clone(),
                    })
                    .await;
                }
                Ok(placement)
            }
            // Nothing was inserted and nothing was there: the pool does not exist.
            None => Err(ZaqarError::not_found(format!(
                "pool {pool:?} does not exist"
            ))),
        }
    }

    async fn remove_queue(&self, project: &str, queue: &str) -> CatalogResult<()> {
        validate_queue(project, queue)?;
        let removed = self.execute(REMOVE, &[project, queue]).await?;
        if removed > 0 {
            self.announce(CatalogEvent::Unplaced {
                project: project.to_string(),
                queue: queue.to_string(),
            })
            .await;
        }
        tracing::debug!(project, queue, "queue placement removed");
        Ok(())
    }

    async fn list_queues(&self, project: &str, params: &ListQueues) -> CatalogResult<QueuePage> {
        validate_listing(project, params)?;
        let list = self.with_contains(LIST_QUEUES, 3);
        let rows: Vec<(String, String, String)> = on_db!(&self.db, db => sqlx::query_as(&list)
            .bind(project)
            .bind(&params.marker)
            .bind(&params.name_filter)
            .bind(i64::from(params.limit))
            .fetch_all(db)
            .await)
        .map_err(store_error)?;
        let mut count: i64 = 0;
        if params.with_count {
            let sql = self.with_contains(COUNT_QUEUES, 2);
            (count,) = on_db!(&self.db, db => sqlx::query_as(&sql)
                .bind(project)
                .bind(&params.name_filter)
                .fetch_one(db)
                .await)
            .map_err(store_error)?;
        }
        let queues = rows
            .into_iter()
            .map(|(queue, pool, endpoint)| Placement::new(project, queue, pool, endpoint))
            .collect();
        Ok(QueuePage {
            queues,
            count: u64::try_from(count).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zaqar_proto::ErrorCode;

    fn pool() -> PoolSpec {
        PoolSpec {
            name: "a".into(),
            weight: 1,
            flavor: String::new(),
            uri: "sqlite://messages.db".into(),
            endpoint: "http://127.0.0.1:7001".into(),
            options_json: "{}".into(),
        }
    }

    #[tokio::test]
    async fn a_reopened_sqlite_catalog_keeps_pools_and_placements() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite://{}/nested/dirs/catalog.db", dir.path().display());
        let catalog = SqlCatalog::open(&uri).await.unwrap();
        catalog.add_pool(pool()).await.unwrap();
        let placed = catalog.place_queue("p", "q", "").await.unwrap();
        drop(catalog);

        let reopened = SqlCatalog::open(&uri).await.unwrap();
        assert_eq!(reopened.list_pools().await.unwrap(), [pool()]);
        assert_eq!(reopened.lookup("p", "q").await.unwrap(), Some(placed));
    }

    #[tokio::test]
    async fn unsupported_or_malformed_uris_are_bad_requests() {
        for uri in [
            "mysql://localhost/zaqar",
            "catalog.db",
            "postgres://host:notaport/db",
        ] {
            let err = SqlCatalog::open(uri).await.err().expect(uri);
            assert_eq!(err.code, ErrorCode::BadRequest, "{uri}: {err}");
        }
    }

    /// Two catalog processes on one PostgreSQL schema hear each other's writes,
    /// once each; a catalog in another schema hears none of them.
    #[tokio::test]
    async fn postgres_catalog_processes_hear_each_others_writes() {
        let Some(url) = zaqar_tests::test_server_url("ZAQAR_TEST_POSTGRES_URL") else {
            return;
        };
        let admin = PgPool::connect(&url).await.unwrap();
        let uri_of = |schema: &str| {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}options=-c%20search_path%3D{schema}")
        };
        let schemas = [0, 1].map(|_| format!("catalog_feed_{:016x}", rand::random::<u64>()));
        for schema in &schemas {
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin)
                .await
                .unwrap();
        }
        let first = SqlCatalog::open(&uri_of(&schemas[0])).await.unwrap();
        let second = SqlCatalog::open(&uri_of(&schemas[0])).await.unwrap();
        let elsewhere = SqlCatalog::open(&uri_of(&schemas[1])).await.unwrap();
        let mut own = first.watch().unwrap();
        let mut heard = second.watch().unwrap();
        let mut unrelated = elsewhere.watch().unwrap();
        for watch in [&mut own, &mut heard, &mut unrelated] {
            assert_eq!(watch.next().await, Some(CatalogEvent::Reset));
        }

        let placed = CatalogEvent::Placed {
            project: "p".into(),
            queue: "q".into(),
            pool: "a".into(),
        };
        let unplaced = CatalogEvent::Unplaced {
            project: "p".into(),
            queue: "q".into(),
        };
        first.add_pool(pool()).await.unwrap();
        expect_next(&mut heard, CatalogEvent::PoolChanged(pool())).await;
        first.place_queue("p", "q", "").await.unwrap();
        expect_next(&mut heard, placed.clone()).await;
        second.remove_queue("p", "q").await.unwrap();
        expect_next(&mut heard, unplaced.clone()).await;
        first.remove_pool("a").await.unwrap();
        expect_next(&mut heard, CatalogEvent::PoolRemoved("a".into())).await;

        // The writer's own watcher sees each of its writes once, and the other's.
        for event in [
            CatalogEvent::PoolChanged(pool()),
            placed,
            unplaced,
            CatalogEvent::PoolRemoved("a".into()),
        ] {
            expect_next(&mut own, event).await;
        }
        for watch in [&mut own, &mut heard, &mut unrelated] {
            let more = tokio::time::timeout(Duration::from_millis(300), watch.next()).await;
            assert!(more.is_err(), "unexpected {more:?}");
        }
        drop((first, second, elsewhere));
        for schema in &schemas {
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await
                .unwrap();
        }
    }

    async fn expect_next(watch: &mut Watch, expected: CatalogEvent) {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap_or_else(|_| panic!("no event within 5 s; expected {expected:?}"));
        assert_eq!(event, Some(expected));
    }

    #[tokio::test]
    async fn an_unreachable_postgres_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = SqlCatalog::open(&format!("postgres://postgres@127.0.0.1:{port}/zaqar"))
            .await
            .err()
            .expect("nothing listens there");
        assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    }
}
