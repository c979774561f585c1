//! Pack lint (filled in below).
