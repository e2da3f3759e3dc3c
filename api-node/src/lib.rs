//! api-node: Zaqar v2 REST in front of pool-nodes, placement through the catalog.
