//! Compiles proto/zaqar.proto and proto/raft.proto with the vendored protoc, so a fresh
//! machine needs only cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=proto/zaqar.proto");
    println!("cargo:rerun-if-changed=proto/raft.proto");
    tonic_build::configure()
        .compile_protos(&["proto/zaqar.proto", "proto/raft.proto"], &["proto"])?;
    Ok(())
}
