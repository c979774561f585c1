//! Corpus evaluation (filled in below).
