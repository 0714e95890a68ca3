//! Veraison's wire contract, a leaf every room may use: releases (media types, nonce encoding,
//! store era by tag), PSA material (devices, CoRIMs, tokens) and EARs.

pub mod ear;
pub mod psa;
pub mod release;
