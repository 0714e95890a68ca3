//! Veraison's wire contract, a leaf every room may use: releases (media types, nonce encoding,
//! store era by tag), PSA material (devices, CoRIMs, tokens), EARs, and the ES256 keys and
//! signatures both use.

pub mod ear;
pub mod es256;
mod modinv;
mod p256_table;
pub mod psa;
pub mod release;
