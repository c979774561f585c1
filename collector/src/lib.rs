//! The Tutela collector: verified ingest, storage, review and rule publishing.

pub mod backup;
mod batch;
pub mod bounds;
pub mod cli;
pub mod config;
pub mod console;
pub mod coverage;
pub mod duration;
pub mod enrolment;
pub mod evidence;
pub mod exemption;
pub mod grpc_web;
pub mod ingest;
pub mod mail;
pub mod memory;
pub mod metrics;
pub mod notice;
pub mod publish;
pub mod reports;
pub mod retention;
pub mod schools;
pub mod secrets;
pub mod serve;
pub mod signature;
pub mod store;
pub mod subscription;
pub mod summary;
pub mod tls;
pub mod urgent;
pub mod webhook;
pub mod writer;

/// The stored name of an observation source.
pub fn source_name(source: i32) -> &'static str {
    use tutela_proto::v1::Source;
    match Source::try_from(source).unwrap_or(Source::Unspecified) {
        Source::Typed => "typed",
        Source::Title => "title",
        Source::Url => "url",
        Source::Search => "search",
        Source::Process => "process",
        Source::Unspecified => "unspecified",
    }
}
