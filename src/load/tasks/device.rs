//! A synthetic device's material, made once per run: its CoRIM, a token for the seed nonce, and
//! a minter that re-signs the token for fresh nonces (the only per-session crypto of signing).

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use bytes::Bytes;

use crate::veraison::psa::{Device, TokenMinter, SEED_NONCE_B64};
use crate::veraison::release::ReleaseProfile;

/// One device's ready-made requests.
pub struct DeviceMaterial {
    /// The device.
    pub device: Device,
    /// Its CoRIM for the release (fixed id; the corim-store era gets a fresh id per request).
    pub corim: Bytes,
    /// A token for the seed nonce.
    pub seed_token: Bytes,
    /// Re-signs for fresh 32-byte nonces.
    pub minter: TokenMinter,
}

/// The seed nonce, decoded.
pub fn seed_nonce() -> Vec<u8> {
    URL_SAFE
        .decode(SEED_NONCE_B64)
        .expect("the seed nonce is valid base64url")
}

impl DeviceMaterial {
    /// Material for fleet device `index` under a release.
    pub fn new(release: &ReleaseProfile, seed: u64, index: u32) -> DeviceMaterial {
        let device = Device::synthetic(seed, index);
        let corim = device.corim(
            release.corim_profile,
            release.corim_tagged,
            &format!("trialrunner-{seed:x}-{index}"),
        );
        let seed_token = device.token(&seed_nonce());
        let minter = TokenMinter::new(&device, 32);
        DeviceMaterial {
            corim: corim.into(),
            seed_token: seed_token.into(),
            minter,
            device,
        }
    }
}
