//! Compiles the RocketMQ v2 schema with `protox` (pure Rust, no system `protoc`) and generates
//! prost types plus tonic server/client stubs. The encoded descriptor set is kept in OUT_DIR so the
//! crate (and its tests) can inspect the schema at run time.

use std::path::PathBuf;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: [&str; 3] = [
    "apache/rocketmq/v2/definition.proto",
    "apache/rocketmq/v2/service.proto",
    "apache/rocketmq/v2/admin.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={PROTO_ROOT}/{file}");
    }

    // Source info is kept so the generated types carry the .proto comments as docs; imports so the
    // descriptor set is self-contained (well-known types included).
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTO_FILES)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("rocketmq_v2_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let descriptors = compiler.file_descriptor_set();

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
