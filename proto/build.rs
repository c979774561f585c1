//! Compiles `tutela/v1/tutela.proto` with protox (pure Rust), so building
//! Tutela never needs a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "tutela/v1/tutela.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["."])?;
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        // Small per-stream buffers: see src/codec.rs.
        .codec_path("crate::codec::LeanCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
