//! trialrunner: load-test campaigns against services deployed on AWS, starting with Veraison.
//!
//! A trial is data before it is action: [`trial`] parses, validates and plans; [`exec`] runs a
//! plan step by step through the provider traits of [`provider`]; providers for AWS ([`aws`]),
//! stores ([`stores`]) and the local stand-in sit at the edges; [`load`] generates load and knows
//! nothing of AWS; [`results`] and [`report`] keep and present what happened.
//! See ARCHITECTURE.md for the map.

#![warn(missing_docs)]

pub mod aws;
pub mod campaign;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod dashboard;
pub mod demo;
pub mod error;
pub mod exec;
pub mod fleet;
pub mod iam;
pub mod load;
pub mod local;
pub mod notify;
pub mod owner;
pub mod provider;
pub mod readiness;
pub mod rehearsal;
pub mod report;
pub mod results;
pub mod secret;
pub mod setup;
pub mod standin;
pub mod stores;
pub mod terminal;
pub mod trial;
pub mod veraison;

pub use error::{Error, Result};
