//! Tutela collector.
