//! `trialrunner psa`: keys, CoRIMs and PSA tokens for a fleet of synthetic devices.

use std::path::PathBuf;

use crate::error::{exit, Error, Result};
use crate::veraison::release::ReleaseProfile;

/// Arguments of `psa`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory.
    #[arg(long, default_value = "psa")]
    pub out: PathBuf,
    /// How many devices.
    #[arg(long, default_value_t = 1)]
    pub devices: u32,
    /// The Veraison release (media type, CoRIM tagging and profile).
    #[arg(long, default_value = "v0.0.2602")]
    pub release: String,
    /// Nonce of the tokens (padded base64url; default: the seed campaign's).
    #[arg(long)]
    pub nonce: Option<String>,
    /// Fleet seed (the same seed gives the same devices).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Writes the material of every device.
pub fn run(args: Args) -> Result<i32> {
    let rel = ReleaseProfile::parse(&args.release).map_err(Error::Usage)?;
    let nonce_b64 = args
        .nonce
        .unwrap_or_else(|| crate::veraison::psa::SEED_NONCE_B64.to_string());
    let nonce = crate::veraison::ear::decode_b64_lenient(&nonce_b64)
        .filter(|n| [32, 48, 64].contains(&n.len()))
        .ok_or_else(|| Error::Usage("--nonce must be base64 of 32, 48 or 64 bytes".into()))?;
    let out = &args.out;
    std::fs::create_dir_all(out)
        .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    let seed = args.seed;
    for i in 0..args.devices {
        let d = crate::veraison::psa::Device::synthetic(seed, i);
        let w = |name: String, bytes: &[u8]| crate::results::write_atomic(&out.join(name), bytes);
        w(
            format!("device-{i}.corim.cbor"),
            &d.corim(
                rel.corim_profile,
                rel.corim_tagged,
                &format!("trialrunner-{seed:x}-{i}"),
            ),
        )?;
        w(format!("device-{i}.token.cbor"), &d.token(&nonce))?;
        w(
            format!("device-{i}.iak-pub.pem"),
            d.public_key_pem().as_bytes(),
        )?;
        let jwk = crate::veraison::ear::public_jwk(&d.key);
        w(
            format!("device-{i}.iak-pub.jwk.json"),
            jwk.to_string().as_bytes(),
        )?;
    }
    crate::outln!(
        "{} device(s) in {}: CoRIM for `{}`, tokens for nonce {nonce_b64}",
        args.devices,
        out.display(),
        rel.provisioning_media_type
    );
    Ok(exit::OK)
}
