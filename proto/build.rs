//! Generates the Rust types of `proto/apache/rocketmq/v2/*.proto` with prost, and with the
//! `transport` feature the tonic server and client of `MessagingService`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The vendored protoc, unless the builder names one.
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let transport = std::env::var_os("CARGO_FEATURE_TRANSPORT").is_some();
    let protos = [
        PathBuf::from("proto/apache/rocketmq/v2/definition.proto"),
        PathBuf::from("proto/apache/rocketmq/v2/service.proto"),
    ];
    // The well-known types (Duration, Timestamp) come with the vendored protoc.
    let includes = [PathBuf::from("proto"), protoc_bin_vendored::include_path()?];
    tonic_prost_build::configure()
        .build_server(transport)
        .build_client(transport)
        .compile_protos(&protos, &includes)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
