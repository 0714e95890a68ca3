//! trialrunner: load-test campaigns against services deployed on AWS, starting with Veraison.
//!
//! A trial is data before it is action: [`trial`] parses, validates and plans; [`exec`] runs a
//! plan step by step through the provider traits of [`provider`]; providers for AWS ([`aws`]),
//! stores ([`stores`]) and the local stand-in sit at the edges; [`load`] generates load and knows
//! nothing of AWS; [`results`] and [`report`] keep and present what happened.
//! See ARCHITECTURE.md for the map.

pub mod cli;
pub mod error;
pub mod report;
pub mod trial;
pub mod veraison;

pub use error::{Error, Result};
