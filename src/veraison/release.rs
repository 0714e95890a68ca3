//! What changes on the wire between Veraison releases (veraison-contract.md §0): the PSA
//! provisioning media type, whether CoRIMs must be tagged, which endorsement store is used, and
//! how nonces are encoded. Everything release-dependent is read from a [`ReleaseProfile`].

use std::fmt;

/// The endorsement store generation of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreEra {
    /// `kvstore` tables `endorsements`, `trust_anchors`, `policies`; duplicates accepted (≤ v0.0.2602).
    KeyValue,
    /// `veraison/corim-store`; duplicate CoRIM ids rejected (≥ v0.0.2603).
    CorimStore,
}

/// The wire contract of one Veraison services release.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseProfile {
    /// The tag as written (`v0.0.2602`, `head`).
    pub tag: String,
    /// YYMM of the tag; `9999` for head.
    pub yymm: u32,
    /// `Content-Type` for PSA CoRIM submission, byte-exact.
    pub provisioning_media_type: &'static str,
    /// The CoRIM profile the extractor requires.
    pub corim_profile: &'static str,
    /// Whether unsigned CoRIMs must carry CBOR tag 501.
    pub corim_tagged: bool,
    /// Which store the release uses.
    pub store: StoreEra,
    /// Whether the provisioning well-known needs a bearer token (≤ v0.0.2503).
    pub well_known_needs_auth: bool,
    /// Whether the session JSON `nonce` is unpadded base64url (HEAD) rather than std base64.
    pub session_nonce_b64url: bool,
}

/// The evidence media type of PSA tokens, in every release.
pub const PSA_EVIDENCE_MEDIA_TYPE: &str = "application/psa-attestation-token";
/// The legacy PSA CoRIM profile.
pub const PSA_PROFILE_LEGACY: &str = "http://arm.com/psa/iot/1";
/// The 2025 PSA CoRIM profile (≥ v0.0.2605).
pub const PSA_PROFILE_2025: &str = "tag:arm.com,2025:psa#1.0.0";

impl ReleaseProfile {
    /// Parses `v0.0.YYMM` or `head`.
    pub fn parse(tag: &str) -> Result<ReleaseProfile, String> {
        let yymm = if tag.eq_ignore_ascii_case("head") {
            9999
        } else {
            tag.strip_prefix("v0.0.")
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|n| (2000..=9998).contains(n))
                .ok_or_else(|| format!("unknown Veraison release `{tag}`: write a services tag like v0.0.2602, or head"))?
        };
        let (media, profile) = match yymm {
            ..=2602 => (
                "application/corim-unsigned+cbor; profile=\"http://arm.com/psa/iot/1\"",
                PSA_PROFILE_LEGACY,
            ),
            2603..=2604 => (
                "application/rim+cbor; profile=\"http://arm.com/psa/iot/1\"",
                PSA_PROFILE_LEGACY,
            ),
            _ => (
                "application/rim+cbor; profile=\"tag:arm.com,2025:psa#1.0.0\"",
                PSA_PROFILE_2025,
            ),
        };
        Ok(ReleaseProfile {
            tag: tag.to_string(),
            yymm,
            provisioning_media_type: media,
            corim_profile: profile,
            corim_tagged: yymm >= 2512,
            store: if yymm <= 2602 {
                StoreEra::KeyValue
            } else {
                StoreEra::CorimStore
            },
            well_known_needs_auth: yymm <= 2503,
            session_nonce_b64url: yymm > 2608,
        })
    }
}

impl fmt::Display for ReleaseProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_of_the_contract() {
        let kv = ReleaseProfile::parse("v0.0.2503").unwrap();
        assert!(kv.well_known_needs_auth && !kv.corim_tagged && kv.store == StoreEra::KeyValue);
        let p = ReleaseProfile::parse("v0.0.2602").unwrap();
        assert!(p.corim_tagged && !p.well_known_needs_auth && p.store == StoreEra::KeyValue);
        assert!(p
            .provisioning_media_type
            .starts_with("application/corim-unsigned+cbor"));
        let c = ReleaseProfile::parse("v0.0.2604").unwrap();
        assert_eq!(c.store, StoreEra::CorimStore);
        assert!(c
            .provisioning_media_type
            .starts_with("application/rim+cbor; profile=\"http://arm.com"));
        let h = ReleaseProfile::parse("head").unwrap();
        assert!(h.session_nonce_b64url && h.corim_profile == PSA_PROFILE_2025);
        assert!(ReleaseProfile::parse("v1.2").is_err());
    }
}
