//! Flavors and pool updates as Zaqar 23's admin API has them, on top of the
//! `CatalogBackend` primitives: a flavor's pools are the pools whose flavor is its name,
//! so writing a flavor's pool list writes those pools' flavors.
//!
//! Like Zaqar's, these are several backend writes in a row, not one transaction: a
//! failure half-way leaves some pools moved; repeating the same call finishes the job.

use zaqar_proto::ZaqarError;

use crate::backend::{CatalogBackend, CatalogResult};
use crate::model::{store_capabilities, validate_flavor_name, FlavorSpec, PoolSpec};

/// A flavor as the API shows it: its record plus its pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlavorView {
    pub name: String,
    /// What the flavor's stores offer now: the capabilities of its first pool's store,
    /// none when it has no pool (Zaqar computes them the same way on every read).
    pub capabilities: Vec<String>,
    /// Names of the pools whose flavor is this flavor, sorted.
    pub pool_list: Vec<String>,
}

/// The fields of a pool to change; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolUpdate {
    pub name: String,
    pub weight: Option<u32>,
    pub uri: Option<String>,
    /// The pool's flavor; `Some("")` moves it to the default flavor.
    pub flavor: Option<String>,
    pub endpoint: Option<String>,
    pub options_json: Option<String>,
}

fn view(flavor: FlavorSpec, pools: &[PoolSpec]) -> FlavorView {
    let members: Vec<&PoolSpec> = pools.iter().filter(|p| p.flavor == flavor.name).collect();
    FlavorView {
        capabilities: members
            .first()
            .map(|pool| store_capabilities(&pool.uri))
            .unwrap_or_default(),
        pool_list: members.iter().map(|p| p.name.clone()).collect(),
        name: flavor.name,
    }
}

/// The flavor named `name`; `not_found` when there is none.
pub async fn get_flavor(catalog: &dyn CatalogBackend, name: &str) -> CatalogResult<FlavorView> {
    validate_flavor_name(name)?;
    let flavor = catalog.get_flavor(name).await?;
    Ok(view(flavor, &catalog.list_pools().await?))
}

/// All flavors, sorted by name.
pub async fn list_flavors(catalog: &dyn CatalogBackend) -> CatalogResult<Vec<FlavorView>> {
    let pools = catalog.list_pools().await?;
    let flavors = catalog.list_flavors().await?;
    Ok(flavors.into_iter().map(|f| view(f, &pools)).collect())
}

/// Writes the flavor `name` with `pool_list` as its pools (Zaqar's PUT, or its PATCH
/// when `replace` is set: then pools of the flavor missing from the list return to the
/// default flavor, and the flavor must exist). `bad_request` for an empty list or an
/// unknown pool, before anything changes.
pub async fn put_flavor(
    catalog: &dyn CatalogBackend,
    name: &str,
    pool_list: &[String],
    replace: bool,
) -> CatalogResult<FlavorView> {
    validate_flavor_name(name)?;
    // Zaqar's words: "could not be created" on PUT, "cant be updated" on PATCH.
    let verb = if replace {
        "cant be updated"
    } else {
        "could not be created"
    };
    if pool_list.is_empty() {
        return Err(ZaqarError::bad_request(format!(
            "Flavor {name} {verb}, error:its pool_list is empty"
        )));
    }
    if replace {
        catalog.get_flavor(name).await?;
    }
    let pools = catalog.list_pools().await?;
    let mut members = Vec::with_capacity(pool_list.len());
    for wanted in pool_list {
        match pools.iter().find(|p| &p.name == wanted) {
            Some(pool) => members.push(pool.clone()),
            None => {
                return Err(ZaqarError::bad_request(format!(
                    "Flavor {name} {verb}, error:Pool {wanted} does not exist"
                )))
            }
        }
    }
    let flavor = FlavorSpec {
        name: name.to_string(),
        capabilities: store_capabilities(&members[0].uri),
    };
    catalog.put_flavor(flavor.validated()?).await?;
    for pool in members.into_iter().filter(|p| p.flavor != name) {
        catalog
            .add_pool(PoolSpec {
                flavor: name.to_string(),
                ..pool
            })
            .await?;
    }
    if replace {
        let leaving = pools
            .iter()
            .filter(|p| p.flavor == name && !pool_list.contains(&p.name));
        for pool in leaving {
            catalog
                .add_pool(PoolSpec {
                    flavor: String::new(),
                    ..pool.clone()
                })
                .await?;
        }
    }
    tracing::info!(flavor = %name, pools = ?pool_list, "flavor written");
    get_flavor(catalog, name).await
}

/// Removes the flavor `name` and returns its pools to the default flavor;
/// `not_found` when there is no such flavor.
pub async fn remove_flavor(catalog: &dyn CatalogBackend, name: &str) -> CatalogResult<()> {
    validate_flavor_name(name)?;
    catalog.get_flavor(name).await?;
    for pool in catalog.list_pools().await? {
        if pool.flavor == name {
            catalog
                .add_pool(PoolSpec {
                    flavor: String::new(),
                    ..pool
                })
                .await?;
        }
    }
    catalog.remove_flavor(name).await?;
    tracing::info!(flavor = %name, "flavor removed");
    Ok(())
}

/// Changes the given fields of an existing pool and returns it as stored;
/// `not_found` when there is no such pool.
pub async fn update_pool(
    catalog: &dyn CatalogBackend,
    update: PoolUpdate,
) -> CatalogResult<PoolSpec> {
    let current = catalog.get_pool(&update.name).await?;
    let pool = PoolSpec {
        weight: update.weight.unwrap_or(current.weight),
        uri: update.uri.unwrap_or(current.uri),
        flavor: update.flavor.unwrap_or(current.flavor),
        endpoint: update.endpoint.unwrap_or(current.endpoint),
        options_json: update.options_json.unwrap_or(current.options_json),
        name: current.name,
    };
    catalog.add_pool(pool.validated()?).await?;
    catalog.get_pool(&update.name).await
}
