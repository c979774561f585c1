//! gRPC-Web for the browser extension: which origins may read the answers.
//!
//! An extension's service worker with the collector in its host permissions
//! is not held to CORS, but a web page is: its browser asks first (gRPC-Web's
//! content type always needs a preflight) and gets no permission, so a page a
//! pupil opens cannot talk to the collector through the pupil's browser.

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Request headers a gRPC-Web client sends.
const REQUEST_HEADERS: [&str; 4] = ["content-type", "x-grpc-web", "x-user-agent", "grpc-timeout"];
/// Response headers and trailers a gRPC-Web client reads.
const RESPONSE_HEADERS: [&str; 5] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    tutela_proto::REJECTED_SEQ_METADATA,
    tutela_proto::COLLECTOR_TIME_METADATA,
];

/// The CORS policy: only `origins` (already checked to be extensions').
pub fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST])
        .allow_headers(REQUEST_HEADERS.map(HeaderName::from_static))
        .expose_headers(RESPONSE_HEADERS.map(HeaderName::from_static))
        .max_age(std::time::Duration::from_secs(24 * 60 * 60))
}
