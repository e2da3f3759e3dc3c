//! Compiles proto/zaqar.proto, proto/raft.proto and proto/admin.proto with the vendored
//! protoc, so a fresh machine needs only cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let protos = ["proto/zaqar.proto", "proto/raft.proto", "proto/admin.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_build::configure().compile_protos(&protos, &["proto"])?;
    Ok(())
}
