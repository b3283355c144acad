//! Generates the BigQuery Storage Write gRPC server code from the vendored protos in `proto/`
//! with protox (a pure-Rust protobuf compiler: the machine has no `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(
        [
            "google/cloud/bigquery/storage/v1/storage.proto",
            "google/rpc/status.proto",
        ],
        ["proto"],
    )?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
