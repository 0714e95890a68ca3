//! Veraison's wire contract: releases, PSA material, EARs, auth, and the stand-in service.

pub mod ear;
pub mod health;
pub mod psa;
pub mod release;
pub mod standin;
