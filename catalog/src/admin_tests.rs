//! Tests of the gRPC `AdminService` on a real socket: pools, flavors, the admin
//! token and raft status.

use super::*;
use crate::raft::testing::TestCluster;
use crate::SqlCatalog;
use tokio_stream::wrappers::TcpListenerStream;
use zaqar_proto::admin_pb::admin_service_client::AdminServiceClient;

type Client = AdminServiceClient<tonic::transport::Channel>;

/// An admin server on a real socket, and a client of it.
async fn serve(server: AdminServer, token: Option<&str>) -> Client {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server.into_service(token.map(str::to_string)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

fn pool(name: &str, weight: i64) -> pb::Pool {
    pb::Pool {
        name: name.into(),
        weight,
        flavor: String::new(),
        uri: "redis://127.0.0.1:6379/0".into(),
        endpoint: "http://127.0.0.1:7001".into(),
        options_json: String::new(),
    }
}

fn code(status: Status) -> ErrorCode {
    ZaqarError::from(status).code
}

#[tokio::test]
async fn bad_admin_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite://{}/catalog.db", dir.path().display());
    let backend = Arc::new(SqlCatalog::open(&uri).await.unwrap());
    let mut client = serve(AdminServer::new(backend.clone(), "sqlite"), None).await;

    let added = client.add_pool(pool("a", 5)).await.unwrap().into_inner();
    assert_eq!((added.weight, added.options_json.as_str()), (5, "{}"));
    for weight in [-1, i64::from(u32::MAX) + 1] {
        let err = client.add_pool(pool("a", weight)).await.unwrap_err();
        assert_eq!(code(err), ErrorCode::BadRequest);
    }
    let err = client.add_pool(pool("bad name", 1)).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::BadRequest);
    // The same name again replaces the pool (Zaqar's PUT).
    client.add_pool(pool("a", 7)).await.unwrap();
    let pools = client.list_pools(pb::Empty {}).await.unwrap().into_inner();
    assert_eq!(pools.pools.len(), 1);
    assert_eq!(pools.pools[0].weight, 7);

    let unknown = pb::PoolName {
        name: "nope".into(),
    };
    let err = client.get_pool(unknown.clone()).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::NotFound);
    let err = client.remove_pool(unknown).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::NotFound);

    backend.place_queue("p", "q", "").await.unwrap();
    let lookup = pb::LookupQueueRequest {
        project: "p".into(),
        queue: "q".into(),
    };
    let found = client.lookup_queue(lookup).await.unwrap().into_inner();
    assert!(found.found);
    assert_eq!(found.pool, "a");
    let a = pb::PoolName { name: "a".into() };
    let err = ZaqarError::from(client.remove_pool(a.clone()).await.unwrap_err());
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(err.description.contains("1 queue"), "{err}");
    assert_eq!(client.get_pool(a).await.unwrap().into_inner().weight, 7);

    let status = client.cluster_status(pb::Empty {}).await.unwrap();
    assert_eq!(status.into_inner().backend, "sqlite");
    let add = pb::CatalogNode {
        node_id: 2,
        addr: "127.0.0.1:7101".into(),
    };
    let err = client.add_catalog_node(add).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::BadRequest);
}

#[tokio::test]
async fn flavors_and_pool_updates_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite://{}/catalog.db", dir.path().display());
    let backend = Arc::new(SqlCatalog::open(&uri).await.unwrap());
    let mut client = serve(AdminServer::new(backend, "sqlite"), None).await;
    client.add_pool(pool("a", 5)).await.unwrap();
    let put = |name: &str, pools: &[&str], replace: bool| pb::PutFlavorRequest {
        name: name.into(),
        pool_list: pools.iter().map(|p| p.to_string()).collect(),
        replace,
    };
    let err = client.put_flavor(put("f", &["nope"], false)).await;
    assert_eq!(code(err.unwrap_err()), ErrorCode::BadRequest);
    let flavor = client.put_flavor(put("f", &["a"], false)).await.unwrap();
    assert_eq!(flavor.into_inner().pool_list, ["a"]);
    let listed = client
        .list_flavors(pb::Empty {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.flavors.len(), 1);
    let name = pb::FlavorName { name: "f".into() };
    let got = client.get_flavor(name.clone()).await.unwrap().into_inner();
    assert_eq!(
        got.capabilities,
        ["FIFO", "CLAIMS", "AOD", "HIGH_THROUGHPUT"]
    );

    let update = |weight: i64| pb::PoolUpdate {
        name: "a".into(),
        weight: Some(weight),
        ..pb::PoolUpdate::default()
    };
    let err = client.update_pool(update(-1)).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::BadRequest);
    let updated = client.update_pool(update(9)).await.unwrap().into_inner();
    assert_eq!((updated.weight, updated.flavor.as_str()), (9, "f"));

    client.remove_flavor(name.clone()).await.unwrap();
    assert_eq!(
        code(client.get_flavor(name.clone()).await.unwrap_err()),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(client.remove_flavor(name).await.unwrap_err()),
        ErrorCode::NotFound
    );
    let a = client
        .get_pool(pb::PoolName { name: "a".into() })
        .await
        .unwrap();
    assert_eq!(a.into_inner().flavor, "");
}

#[tokio::test]
async fn a_configured_token_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite://{}/catalog.db", dir.path().display());
    let backend = Arc::new(SqlCatalog::open(&uri).await.unwrap());
    let mut client = serve(AdminServer::new(backend, "sqlite"), Some("s3cret")).await;
    let err = client.list_pools(pb::Empty {}).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::Unauthorized);
    let mut request = Request::new(pb::Empty {});
    let wrong = "Bearer nope".parse().unwrap();
    request.metadata_mut().insert("authorization", wrong);
    assert_eq!(
        code(client.list_pools(request).await.unwrap_err()),
        ErrorCode::Unauthorized
    );
    let mut request = Request::new(pb::Empty {});
    let right = "Bearer s3cret".parse().unwrap();
    request.metadata_mut().insert("authorization", right);
    assert!(client.list_pools(request).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raft_status_names_the_leader_and_members() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(1);
    let mut client = serve(AdminServer::for_raft(node.clone()), None).await;
    // A write goes through once the node has elected itself.
    node.add_pool(PoolSpec {
        name: "a".into(),
        weight: 1,
        flavor: String::new(),
        uri: "redis://x:1".into(),
        endpoint: "http://x:1".into(),
        options_json: String::new(),
    })
    .await
    .unwrap();
    let status = client.cluster_status(pb::Empty {}).await.unwrap();
    let status = status.into_inner();
    assert_eq!(status.backend, "raft");
    let raft = status.raft.unwrap();
    assert_eq!((raft.node_id, raft.leader_id), (1, Some(1)));
    assert_eq!(raft.members.len(), 1);
    assert!(raft.members[0].voter);
    assert_eq!(raft.leader_addr, raft.members[0].addr);
    assert!(raft.last_applied_index.is_some());
    let err = client
        .remove_catalog_node(pb::CatalogNodeId { node_id: 9 })
        .await
        .unwrap_err();
    assert_eq!(code(err), ErrorCode::NotFound);
    drop(client);
    cluster.shutdown().await;
}
