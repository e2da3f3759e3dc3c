//! The actions of Zaqar's v2 WebSocket API, parsed once from a request's `action`
//! field into [`Action`]: the schema table (`schema.rs`), the dispatch
//! (`actions.rs`, `admin_actions.rs`) and the metrics' labels all match on it, so
//! an action added to one and missing from another does not compile.

/// Declares [`Action`] with the wire name of each variant.
macro_rules! actions {
    ($($variant:ident => $name:literal,)*) => {
        /// One action of the API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Action {
            $($variant,)*
        }

        impl Action {
            /// Every action.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// The action's name on the wire.
            pub fn name(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }

            /// The action named `name`, if the API has one.
            pub fn parse(name: &str) -> Option<Action> {
                match name {
                    $($name => Some(Action::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    GetHomeDoc => "get_home_doc",
    CheckNodeHealth => "check_node_health",
    PingNode => "ping_node",
    Authenticate => "authenticate",
    QueueList => "queue_list",
    QueueCreate => "queue_create",
    QueueGet => "queue_get",
    QueueDelete => "queue_delete",
    QueueGetStats => "queue_get_stats",
    QueuePurge => "queue_purge",
    QueueRedrive => "queue_redrive",
    MessageList => "message_list",
    MessageGet => "message_get",
    MessageGetMany => "message_get_many",
    MessagePost => "message_post",
    MessageDelete => "message_delete",
    MessageDeleteMany => "message_delete_many",
    ClaimCreate => "claim_create",
    ClaimGet => "claim_get",
    ClaimUpdate => "claim_update",
    ClaimDelete => "claim_delete",
    SubscriptionCreate => "subscription_create",
    SubscriptionList => "subscription_list",
    SubscriptionGet => "subscription_get",
    SubscriptionDelete => "subscription_delete",
    PoolCreate => "pool_create",
    PoolList => "pool_list",
    PoolGet => "pool_get",
    PoolUpdate => "pool_update",
    PoolDelete => "pool_delete",
    FlavorCreate => "flavor_create",
    FlavorList => "flavor_list",
    FlavorGet => "flavor_get",
    FlavorUpdate => "flavor_update",
    FlavorDelete => "flavor_delete",
}

impl Action {
    /// Whether the action manages pools or flavors (`admin_actions.rs`).
    pub fn is_pool_or_flavor(self) -> bool {
        use Action::*;
        matches!(
            self,
            PoolCreate
                | PoolList
                | PoolGet
                | PoolUpdate
                | PoolDelete
                | FlavorCreate
                | FlavorList
                | FlavorGet
                | FlavorUpdate
                | FlavorDelete
        )
    }

    /// Whether the action exists only in admin mode.
    pub fn is_privileged(self) -> bool {
        self.is_pool_or_flavor() || self == Action::CheckNodeHealth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_action() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.name()), Some(*action));
        }
        assert_eq!(Action::ALL.len(), 35);
        assert_eq!(Action::parse("subscription_update"), None);
        assert_eq!(Action::parse("Queue_list"), None);
    }

    #[test]
    fn privileged_actions_are_pools_flavors_and_health() {
        let privileged: Vec<&str> = Action::ALL
            .iter()
            .filter(|action| action.is_privileged())
            .map(|action| action.name())
            .collect();
        assert_eq!(privileged.len(), 11);
        assert!(privileged.iter().all(|name| name.starts_with("pool_")
            || name.starts_with("flavor_")
            || *name == "check_node_health"));
    }
}
