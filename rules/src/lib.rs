//! Tutela rule engine (in progress).
