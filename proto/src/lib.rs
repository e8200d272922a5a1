//! graspd's gRPC API (`grasp.v1`), generated at build time from `proto/grasp/v1/*.proto`.

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("grasp.v1");
}

/// Encoded `FileDescriptorSet` of every `grasp.v1` file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("grasp_descriptor");
