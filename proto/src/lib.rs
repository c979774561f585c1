//! The Tutela wire protocol, `tutela.v1`, generated from `tutela/v1/tutela.proto`.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("tutela.v1");
}

/// Largest encoded message either side accepts by default (2 MiB capture + body).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 3 * 1024 * 1024;
