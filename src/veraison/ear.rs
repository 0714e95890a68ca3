//! EAR (Entity Attestation Result) JWTs: the stand-in signs them (ES256) as Veraison's VTS does;
//! the load engine decodes them to read `ear.status` and can verify them with the JWK from the
//! verification well-known.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use super::es256::{PublicKey, SigningKey, Verifier};

/// The EAR profile Veraison uses.
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// Appraisal status values, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EarStatus {
    /// All checks passed.
    Affirming,
    /// Passed with reservations (e.g. unknown firmware).
    Warning,
    /// Failed (bad signature, wrong nonce, unknown device).
    Contraindicated,
    /// No claim could be made.
    None,
}

impl EarStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EarStatus::Affirming => "affirming",
            EarStatus::Warning => "warning",
            EarStatus::Contraindicated => "contraindicated",
            EarStatus::None => "none",
        }
    }

    fn parse(s: &str) -> Option<EarStatus> {
        Some(match s {
            "affirming" => EarStatus::Affirming,
            "warning" => EarStatus::Warning,
            "contraindicated" => EarStatus::Contraindicated,
            "none" => EarStatus::None,
            _ => return None,
        })
    }
}

/// The public half of a signing key as a JWK (what the verification well-known publishes).
pub fn public_jwk(key: &SigningKey) -> Value {
    let public = key.public_key();
    json!({
        "kty": "EC",
        "crv": "P-256",
        "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(public.x()),
        "y": URL_SAFE_NO_PAD.encode(public.y()),
    })
}

/// The service's EAR key, parsed once for the load's hot path.
#[derive(Debug, Clone)]
pub struct EarKey(Verifier);

impl EarKey {
    /// Whether `sig` (raw `r‖s`) signs `message`.
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        self.0.verifies(message, sig)
    }
}

impl From<&PublicKey> for EarKey {
    fn from(key: &PublicKey) -> EarKey {
        EarKey(key.verifier_for_many())
    }
}

/// A verifying key from a JWK (a point on P-256, checked).
pub fn key_from_jwk(jwk: &Value) -> Option<EarKey> {
    let coord = |k: &str| {
        jwk.get(k)?
            .as_str()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
    };
    PublicKey::from_xy(&coord("x")?, &coord("y")?).map(|k| EarKey::from(&k))
}

/// Builds and signs an EAR for one PSA appraisal.
pub fn sign_ear(
    key: &SigningKey,
    status: EarStatus,
    trust_vector: Value,
    nonce: &[u8],
    annotated: Value,
    iat: i64,
) -> String {
    let header = json!({"alg": "ES256", "typ": "JWT"});
    let claims = json!({
        "eat_profile": EAR_PROFILE,
        "iat": iat,
        "ear.verifier-id": {"build": concat!("trialrunner-standin ", env!("CARGO_PKG_VERSION")), "developer": "trialrunner"},
        // Padded base64url, as Veraison's appraisal context writes it (contract §1.5).
        "eat_nonce": URL_SAFE.encode(nonce),
        "submods": {"PSA_IOT": {
            "ear.status": status.as_str(),
            "ear.trustworthiness-vector": trust_vector,
            "ear.appraisal-policy-id": "policy:PSA_IOT",
            "ear.veraison.annotated-evidence": annotated,
        }},
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Why an EAR could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EarError {
    /// Not a compact JWS with a JSON payload.
    #[error("EAR is not a JWT: {0}")]
    Malformed(&'static str),
    /// The signature does not verify with the given key.
    #[error("EAR signature does not verify")]
    BadSignature,
    /// `eat_nonce` is not the session's nonce (a replayed or mixed-up result).
    #[error("EAR eat_nonce does not match the session nonce")]
    NonceMismatch,
}

/// The worst `ear.status` over all submodules, from a JWT; the signature is checked when a key
/// is given (the load engine's hot path skips it, the readiness check does not).
pub fn ear_status(jwt: &str, key: Option<&EarKey>) -> Result<EarStatus, EarError> {
    check_ear(jwt, key, None)
}

/// [`ear_status`], and when `nonce` is given, `eat_nonce` must decode to it: what every
/// verification under load checks (the signature with the service's key, the nonce with the
/// session's).
pub fn check_ear(
    jwt: &str,
    key: Option<&EarKey>,
    nonce: Option<&[u8]>,
) -> Result<EarStatus, EarError> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(EarError::Malformed("expected three dot-separated parts"));
    };
    if let Some(key) = key {
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| EarError::Malformed("signature is not base64url"))?;
        // The signing input is the JWT up to its second dot, as sent: no copy.
        let signed = &jwt[..h.len() + 1 + p.len()];
        if !key.verifies(signed.as_bytes(), &sig) {
            return Err(EarError::BadSignature);
        }
    }
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| EarError::Malformed("payload is not base64url"))?;
    // The claims the check reads, borrowed (the annotated evidence is skipped, not built);
    // anything unusual takes the general reading below, which says what is wrong.
    if let Ok(c) = serde_json::from_slice::<EarClaims>(&payload) {
        let statuses = c
            .submods
            .as_ref()
            .map(|m| m.values().map(|s| s.status.as_deref()));
        return judge(c.eat_nonce.as_deref(), statuses, nonce);
    }
    let claims: Value =
        serde_json::from_slice(&payload).map_err(|_| EarError::Malformed("payload is not JSON"))?;
    let statuses = claims.get("submods").and_then(Value::as_object).map(|m| {
        m.values()
            .map(|s| s.get("ear.status").and_then(Value::as_str))
    });
    judge(
        claims.get("eat_nonce").and_then(Value::as_str),
        statuses,
        nonce,
    )
}

/// The claims of an EAR that its check reads.
#[derive(serde::Deserialize)]
struct EarClaims<'a> {
    #[serde(borrow, default)]
    eat_nonce: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    submods: Option<std::collections::BTreeMap<std::borrow::Cow<'a, str>, Submod<'a>>>,
}

/// One submodule's appraisal.
#[derive(serde::Deserialize)]
struct Submod<'a> {
    #[serde(borrow, default, rename = "ear.status")]
    status: Option<std::borrow::Cow<'a, str>>,
}

/// The verdict of an EAR's claims: its nonce must be the session's (when one is given), and
/// the worst status of its submodules is its status.
fn judge<'s>(
    eat_nonce: Option<&str>,
    statuses: Option<impl Iterator<Item = Option<&'s str>>>,
    nonce: Option<&[u8]>,
) -> Result<EarStatus, EarError> {
    if let Some(want) = nonce {
        if eat_nonce.and_then(decode_b64_lenient).as_deref() != Some(want) {
            return Err(EarError::NonceMismatch);
        }
    }
    let rank = |s: EarStatus| match s {
        EarStatus::Affirming => 0,
        EarStatus::Warning => 1,
        EarStatus::Contraindicated => 2,
        EarStatus::None => 3,
    };
    statuses
        .ok_or(EarError::Malformed("no submods"))?
        .filter_map(|s| s.and_then(EarStatus::parse))
        .max_by_key(|s| rank(*s))
        .ok_or(EarError::Malformed("no ear.status"))
}

/// Decodes base64 in any of the variants Veraison releases used (contract §1.5: be lenient).
pub fn decode_b64_lenient(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    [&URL_SAFE_NO_PAD, &URL_SAFE, &STANDARD, &STANDARD_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

/// Standard padded base64 (the session JSON's `nonce` in tagged releases, `evidence.value`).
pub fn b64_std(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_read_status_with_and_without_key() {
        let key = SigningKey::from_scalar(&[7u8; 32]).unwrap();
        let jwt = sign_ear(
            &key,
            EarStatus::Affirming,
            json!({}),
            &[1; 32],
            json!({}),
            0,
        );
        let vk = key_from_jwk(&public_jwk(&key)).unwrap();
        assert_eq!(ear_status(&jwt, Some(&vk)), Ok(EarStatus::Affirming));
        let other = EarKey::from(&SigningKey::from_scalar(&[8u8; 32]).unwrap().public_key());
        assert_eq!(ear_status(&jwt, Some(&other)), Err(EarError::BadSignature));
        assert!(ear_status("a.b", None).is_err());
    }

    /// An unsigned JWT around these claims.
    fn jwt_of(claims: &Value) -> String {
        format!(
            "e30.{}.",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
        )
    }

    #[test]
    fn the_worst_status_counts_and_odd_claims_say_what_is_wrong() {
        let n = URL_SAFE.encode([1u8; 32]);
        let status = |claims: Value, nonce: Option<&[u8]>| check_ear(&jwt_of(&claims), None, nonce);
        let two = json!({"eat_nonce": n, "submods": {"a": {"ear.status": "affirming"}, "b": {"ear.status": "warning", "x": [1, {"y": 2}]}}});
        assert_eq!(status(two.clone(), Some(&[1; 32])), Ok(EarStatus::Warning));
        assert_eq!(status(two, Some(&[2; 32])), Err(EarError::NonceMismatch));
        // Shapes the borrowed reading refuses go through the general one, same verdicts.
        assert_eq!(
            status(json!({"eat_nonce": 7, "submods": {}}), Some(&[1; 32])),
            Err(EarError::NonceMismatch)
        );
        assert_eq!(
            status(json!({"submods": []}), None),
            Err(EarError::Malformed("no submods"))
        );
        assert_eq!(
            status(json!({"submods": {"a": {"ear.status": 3}}}), None),
            Err(EarError::Malformed("no ear.status"))
        );
        assert_eq!(
            status(
                json!({"submods": {"a": {"ear.status": "affirming"}, "b": 5}}),
                None
            ),
            Ok(EarStatus::Affirming)
        );
    }
}
