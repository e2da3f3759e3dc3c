//! The control plane with a cluster token, with the real `zaqar` binary: a raft
//! catalog, a pool-node and an api-node that share one token work together, and
//! every gRPC method of every role (catalog, raft, pool-node; read from the
//! .proto files) refuses a call without the token or with a wrong one, changing
//! nothing. A role that would serve gRPC beyond loopback without authentication
//! refuses to start.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use tonic::codec::ProstCodec;
use tonic::transport::{Channel, Endpoint};
use zaqar_tests::catalog_cluster::{admin_with_token, eventually, CatalogNode};
use zaqar_tests::{free_port, wait_for_port, zaqar_bin, Client, Process};

const TOKEN: &str = "test-cluster-token-0123456789";

/// `/package.Service/Method` of every rpc of `service` in the proto file `file`.
fn methods(file: &str, service: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../proto/proto")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("the proto file");
    let package = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("package "))
        .expect("a package line")
        .trim_end_matches(';');
    let body = text
        .split(&format!("service {service} {{"))
        .nth(1)
        .expect("the service")
        .split("\n}")
        .next()
        .unwrap();
    let paths: Vec<String> = body
        .lines()
        .filter_map(|line| line.trim().strip_prefix("rpc "))
        .map(|rpc| rpc.split('(').next().unwrap().trim())
        .map(|name| format!("/{package}.{service}/{name}"))
        .collect();
    assert!(!paths.is_empty(), "no rpc in {service}");
    paths
}

/// Calls `path` with an empty message and `token` (none: no header); the status
/// code, or `Ok` when the call succeeded or was still running after a while (a stream).
async fn call(channel: &Channel, path: &str, token: Option<&str>) -> tonic::Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if grpc.ready().await.is_err() {
        return tonic::Code::Unavailable;
    }
    let mut request = tonic::Request::new(());
    if let Some(token) = token {
        let value = token.parse().expect("an ASCII token");
        request
            .metadata_mut()
            .insert("x-zaqar-cluster-token", value);
    }
    let path = path.parse().expect("a method path");
    let codec: ProstCodec<(), ()> = ProstCodec::default();
    let unary = grpc.unary(request, path, codec);
    match tokio::time::timeout(Duration::from_secs(3), unary).await {
        Ok(Ok(_)) | Err(_) => tonic::Code::Ok,
        Ok(Err(status)) => status.code(),
    }
}

/// `zaqar admin --json ARGS` against `catalog` with the cluster token `token`.
async fn admin(catalog: &str, token: Option<&str>, args: &[&str]) -> Result<Value> {
    admin_with_token(&[catalog.to_string()], token, args).await
}

#[tokio::test]
async fn every_grpc_method_of_every_role_requires_the_cluster_token() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let mut catalog = CatalogNode::new(1, d);
    catalog
        .args
        .extend(["--cluster-token".into(), TOKEN.into()]);
    catalog.start(d)?;
    let (pool_port, api_port) = (free_port(), free_port());
    let (pool_listen, api_listen) = (
        format!("127.0.0.1:{pool_port}"),
        format!("127.0.0.1:{api_port}"),
    );
    let ws_listen = format!("127.0.0.1:{}", free_port());
    let store = format!("sqlite://{}/messages.db", d.display());
    let catalog_endpoint = catalog.endpoint();
    let pool_args = [
        "pool-node",
        "--listen",
        &pool_listen,
        "--uri",
        &store,
        "--name",
        "guarded",
        "--catalog",
        &catalog_endpoint,
        "--cluster-token",
        TOKEN,
    ];
    let _pool = Process::spawn("pool-node", &zaqar_bin(), &pool_args, d)?;
    let api_args = [
        "api-node",
        "--listen",
        &api_listen,
        "--ws-listen",
        &ws_listen,
        "--catalog",
        &catalog_endpoint,
        "--cluster-token",
        TOKEN,
    ];
    let _api = Process::spawn("api-node", &zaqar_bin(), &api_args, d)?;
    wait_for_port(pool_port, Duration::from_secs(30))?;
    wait_for_port(api_port, Duration::from_secs(30))?;

    // With the token, the roles work together: pool-node -> catalog, api-node -> both.
    let client = Client::new(api_port, "guarded-project");
    eventually(
        "a post through the api-node",
        Duration::from_secs(30),
        || {
            let client = &client;
            async move {
                let body = json!({"messages": [{"body": "kept", "ttl": 300}]});
                let reply = client.post("/v2/queues/q/messages", body).await?;
                ensure!(reply.status == 201, "{reply:?}");
                Ok(())
            }
        },
    )
    .await?;
    let pools = admin(&catalog.endpoint(), Some(TOKEN), &["pools", "list"]).await?;
    assert_eq!(pools.as_array().map(Vec::len), Some(1), "{pools}");
    assert!(
        admin(&catalog.endpoint(), None, &["pools", "list"])
            .await
            .is_err(),
        "zaqar admin without the cluster token was answered"
    );

    let endpoint = |port: u16| Endpoint::from_shared(format!("http://127.0.0.1:{port}"));
    let targets = [
        (catalog.grpc_port, "zaqar.proto", "CatalogService"),
        (catalog.grpc_port, "admin.proto", "AdminService"),
        (catalog.raft_port, "raft.proto", "RaftService"),
        (pool_port, "zaqar.proto", "PoolService"),
    ];
    let mut checked = 0;
    for (port, file, service) in targets {
        let channel = endpoint(port)?.connect().await?;
        for path in methods(file, service) {
            for token in [None, Some("wrong-token-0123456789")] {
                let code = call(&channel, &path, token).await;
                assert_eq!(code, tonic::Code::Unauthenticated, "{path} with {token:?}");
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "only {checked} calls were checked");

    // Nothing changed: the one pool and the one message are there, as they were.
    let pools = admin(&catalog.endpoint(), Some(TOKEN), &["pools", "list"]).await?;
    assert_eq!(pools[0]["name"], "guarded", "{pools}");
    assert_eq!(pools.as_array().map(Vec::len), Some(1), "{pools}");
    let listed = client.get("/v2/queues/q/messages?echo=true").await?;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.body["messages"][0]["body"], "kept", "{listed:?}");

    // An api-node with another token finds the other roles unavailable: 503, not a 401.
    let stranger_port = free_port();
    let (stranger_listen, stranger_ws) = (
        format!("127.0.0.1:{stranger_port}"),
        format!("127.0.0.1:{}", free_port()),
    );
    let stranger_args = [
        "api-node",
        "--listen",
        &stranger_listen,
        "--ws-listen",
        &stranger_ws,
        "--catalog",
        &catalog_endpoint,
        "--cluster-token",
        "another-token-0123456789",
    ];
    let _stranger = Process::spawn("api-node-2", &zaqar_bin(), &stranger_args, d)?;
    wait_for_port(stranger_port, Duration::from_secs(30))?;
    let refused = Client::new(stranger_port, "guarded-project")
        .get("/v2/queues/q/messages?echo=true")
        .await?;
    assert_eq!(refused.status, 503, "{refused:?}");

    // With the token, the same read-only calls get past authentication.
    let reads = [
        (catalog.grpc_port, "/zaqar.v1.CatalogService/ListPools"),
        (catalog.grpc_port, "/zaqar.admin.v1.AdminService/ListPools"),
        (pool_port, "/zaqar.v1.PoolService/Health"),
    ];
    for (port, path) in reads {
        let channel = endpoint(port)?.connect().await?;
        assert_eq!(
            call(&channel, path, Some(TOKEN)).await,
            tonic::Code::Ok,
            "{path}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_role_beyond_loopback_without_authentication_refuses_to_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let listen = format!("0.0.0.0:{}", free_port());
    let raft = format!("127.0.0.1:{}", free_port());
    let data = d.join("raft").display().to_string();
    let catalog = [
        "catalog",
        "--listen",
        &listen,
        "--raft-listen",
        &raft,
        "--data-dir",
        &data,
    ];
    let store = format!("sqlite://{}/messages.db", d.display());
    let pool = [
        "pool-node",
        "--listen",
        &listen,
        "--advertise",
        "http://127.0.0.1:1",
        "--uri",
        &store,
    ];
    for args in [&catalog[..], &pool[..]] {
        let out = std::process::Command::new(zaqar_bin())
            .args(args)
            .env_remove("ZAQAR_CLUSTER_TOKEN")
            .output()?;
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started: {log}");
        assert!(log.contains("--insecure-cluster"), "{args:?}: {log}");
    }
    Ok(())
}
