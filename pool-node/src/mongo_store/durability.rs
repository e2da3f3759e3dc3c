//! Whether the writes this store acknowledges survive a crash and a failover: the
//! write concern in effect (the URI's, else `w: majority, j: true`) against the
//! data-bearing members the replica set lists.

use mongodb::bson::{doc, Document};
use mongodb::options::{Acknowledgment, WriteConcern};

use super::{store_error, MongoStore};
use crate::store::StoreResult;

/// What can lose acknowledged writes on this store, `None` when nothing does.
pub async fn volatility(store: &MongoStore) -> StoreResult<Option<String>> {
    let hello = store
        .client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .map_err(store_error)?;
    let gaps = gaps(&store.write_concern, data_bearing_members(&hello));
    Ok((!gaps.is_empty()).then(|| gaps.join("; ")))
}

/// The members a majority write must reach, from a `hello` answer: the hosts and
/// the passive members (arbiters hold no data); 1 outside a replica set.
fn data_bearing_members(hello: &Document) -> usize {
    let count = |field: &str| hello.get_array(field).map_or(0, Vec::len);
    (count("hosts") + count("passives")).max(1)
}

/// What in `concern` can lose a write it acknowledged, on a replica set of
/// `members` data-bearing members.
fn gaps(concern: &WriteConcern, members: usize) -> Vec<String> {
    let mut gaps = Vec::new();
    match &concern.w {
        Some(Acknowledgment::Nodes(0)) => {
            gaps.push("w=0: the server does not acknowledge writes".to_string());
        }
        Some(Acknowledgment::Nodes(nodes))
            if usize::try_from(*nodes).unwrap_or(0) <= members / 2 =>
        {
            gaps.push(format!(
                "w={nodes} of {members} members: a write acknowledged before a majority has it \
                 is lost when the primary fails over (use w=majority)"
            ));
        }
        // A majority, enough nodes for one, or the operator's own tag set.
        _ => {}
    }
    if concern.journal == Some(false) {
        gaps.push(
            "journal=false: an acknowledged write may not be on disk when the server crashes"
                .to_string(),
        );
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concern(w: Acknowledgment, journal: bool) -> WriteConcern {
        WriteConcern::builder().w(w).journal(journal).build()
    }

    #[test]
    fn only_majority_and_journaled_writes_are_durable() {
        assert!(gaps(&concern(Acknowledgment::Majority, true), 3).is_empty());
        assert!(gaps(&concern(Acknowledgment::Nodes(2), true), 3).is_empty());
        assert!(gaps(&concern(Acknowledgment::Nodes(1), true), 1).is_empty());
        assert!(gaps(&concern(Acknowledgment::Custom("dc".into()), true), 3).is_empty());
        let one = gaps(&concern(Acknowledgment::Nodes(1), true), 3);
        assert!(one[0].starts_with("w=1 of 3 members"), "{one:?}");
        let unjournaled = gaps(&concern(Acknowledgment::Majority, false), 3);
        assert!(
            unjournaled[0].starts_with("journal=false"),
            "{unjournaled:?}"
        );
        assert_eq!(gaps(&concern(Acknowledgment::Nodes(0), false), 3).len(), 2);
    }

    #[test]
    fn members_come_from_hosts_and_passives() {
        let hello = doc! { "hosts": ["a:1", "b:1"], "passives": ["c:1"], "arbiters": ["d:1"] };
        assert_eq!(data_bearing_members(&hello), 3);
        assert_eq!(data_bearing_members(&doc! { "isWritablePrimary": true }), 1);
    }
}
