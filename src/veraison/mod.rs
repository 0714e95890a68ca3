//! Veraison's wire contract: releases, PSA material, EARs, auth, and the stand-in service.

pub mod release;
