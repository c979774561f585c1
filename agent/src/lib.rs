//! The Tutela workstation agent.
//!
//! sensors -> observations -> matcher -> evidence -> sign -> spool -> uplink

pub mod capture;
pub mod concern;
pub mod config;
#[cfg(windows)]
pub mod data_dir_acl;
pub mod enrol;
pub mod event;
pub mod exemption;
pub mod identity;
pub mod install;
pub mod link;
pub mod memory;
pub mod monitor;
pub mod notice;
pub mod observation;
pub mod pinning;
pub mod rules_sync;
pub mod sensor;
#[cfg(windows)]
pub mod service;
#[cfg(windows)]
pub mod service_setup;
pub mod session;
pub mod shadow;
pub mod spool;
pub mod uplink;
