//! Compiles proto/zaqar.proto with the vendored protoc, so a fresh machine needs only cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=proto/zaqar.proto");
    tonic_build::configure().compile_protos(&["proto/zaqar.proto"], &["proto"])?;
    Ok(())
}
