//! PSA material the project makes itself: device identities (P-256 key, implementation and
//! instance ids, firmware measurements), unsigned CoRIMs that provision them, and PSA
//! attestation tokens (tagged COSE_Sign1, ES256) for any nonce. Also the parsing the stand-in
//! needs: CoRIM → trust anchor and reference values, token → claims + signature check.
//!
//! Layouts follow veraison-contract.md §5 and the upstream vectors in
//! `../shared/veraison-testdata/` (checked in the tests; never copied).

use ciborium::value::{Integer, Value};
use sha2::{Digest, Sha256};

use super::es256::{PublicKey, SigningKey};

/// CBOR tags used by CoRIM, CoMID and COSE.
mod tag {
    pub const COSE_SIGN1: u64 = 18;
    pub const URI: u64 = 32;
    pub const CORIM_UNSIGNED: u64 = 501;
    pub const COMID: u64 = 506;
    pub const UEID: u64 = 550;
    pub const PKIX_BASE64_KEY: u64 = 554;
    pub const TAGGED_BYTES: u64 = 560;
    pub const PSA_IMPL_ID: u64 = 600;
    pub const PSA_REFVAL_ID: u64 = 601;
}

/// PSA claim keys (profile 2).
mod claim {
    pub const NONCE: i64 = 10;
    pub const INSTANCE_ID: i64 = 256;
    pub const PROFILE: i64 = 265;
    pub const CLIENT_ID: i64 = 2394;
    pub const LIFECYCLE: i64 = 2395;
    pub const IMPLEMENTATION_ID: i64 = 2396;
    pub const BOOT_SEED: i64 = 2397;
    pub const SW_COMPONENTS: i64 = 2399;
    pub const VSI: i64 = 2400;
}

/// The PSA token profile.
pub const PSA_TOKEN_PROFILE: &str = "http://arm.com/psa/2.0.0";
/// The nonce of the upstream vectors and the seed's Locust runs (32 bytes).
pub const SEED_NONCE_B64: &str = "QUp8F0FBs9DpodKK8xUg8NQimf6sQAfe2J1ormzZLxk=";

/// Errors parsing CoRIMs and tokens (what the stand-in reports as failures).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PsaError {
    /// Not CBOR, or not the expected shape.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// CoRIM, CoMID or token.
        what: &'static str,
        /// Details.
        why: String,
    },
    /// The COSE signature does not verify.
    #[error("signature verification failed")]
    BadSignature,
}

fn malformed(what: &'static str, why: impl Into<String>) -> PsaError {
    PsaError::Malformed {
        what,
        why: why.into(),
    }
}

/// One measured firmware component.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SwComponent {
    /// Measurement type, e.g. `BL`.
    pub measurement_type: String,
    /// SHA-256 of the component.
    pub measurement_value: Vec<u8>,
    /// Version string.
    pub version: String,
    /// Signer id (hash of the signing authority).
    pub signer_id: Vec<u8>,
}

/// A synthetic PSA device: identity, attestation key and firmware.
#[derive(Clone)]
pub struct Device {
    /// 32-byte implementation id.
    pub implementation_id: Vec<u8>,
    /// 33-byte UEID (first byte 0x01, then a 32-byte random id).
    pub instance_id: Vec<u8>,
    /// The initial attestation key.
    pub key: SigningKey,
    /// Firmware components.
    pub sw_components: Vec<SwComponent>,
}

fn h(parts: &[&[u8]]) -> Vec<u8> {
    let mut d = Sha256::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().to_vec()
}

impl Device {
    /// A deterministic device for a fleet index: the same `(seed, index)` always gives the same
    /// identity and key, so CoRIMs and tokens can be regenerated anywhere.
    pub fn synthetic(seed: u64, index: u32) -> Device {
        let s = seed.to_be_bytes();
        let i = index.to_be_bytes();
        let mut impl_id = format!("trialrunner-impl-{seed:08x}-{index:06}").into_bytes();
        impl_id.resize(32, b'0');
        let mut instance_id = vec![0x01];
        instance_id.extend(h(&[b"instance", &s, &i]));
        let mut counter = 0u8;
        let key = loop {
            if let Some(k) = SigningKey::from_scalar(&h(&[b"iak", &s, &i, &[counter]])) {
                break k;
            }
            counter += 1;
        };
        let signer_id = h(&[b"signer", &s]);
        let sw_components = [("BL", "2.1.0"), ("PRoT", "1.3.5"), ("ARoT", "0.1.4")]
            .into_iter()
            .map(|(t, v)| SwComponent {
                measurement_type: t.into(),
                measurement_value: h(&[b"fw", t.as_bytes(), v.as_bytes(), &s]),
                version: v.into(),
                signer_id: signer_id.clone(),
            })
            .collect();
        Device {
            implementation_id: impl_id,
            instance_id,
            key,
            sw_components,
        }
    }

    /// The attestation public key as PEM (what CoRIMs carry).
    pub fn public_key_pem(&self) -> String {
        self.key.public_key().pem()
    }

    /// An unsigned CoRIM provisioning this device's reference values and trust anchor.
    /// `tagged` wraps it in tag 501 (required from v0.0.2512); `corim_id` should be unique
    /// per submission in the corim-store era. Written in the order of the CoRIM CDDL: the
    /// corim-map here, each comid-map in [`comid`], its triples in
    /// [`Device::reference_triples`] and [`Device::attest_key_triples`].
    pub fn corim(&self, profile: &str, tagged: bool, corim_id: &str) -> Vec<u8> {
        let tag_id = |kind: &str| {
            h(&[kind.as_bytes(), corim_id.as_bytes(), &self.instance_id])[..16].to_vec()
        };
        // Tagged CoRIMs (set B/C) carry `#6.506(bstr .cbor comid)`; the untagged ones of older
        // releases (set A) carry `bstr .cbor #6.506(comid)`.
        let comids = [
            comid(&tag_id("rv"), self.reference_triples()),
            comid(&tag_id("ta"), self.attest_key_triples()),
        ]
        .into_iter()
        .map(|c| {
            if tagged {
                Value::Tag(tag::COMID, Box::new(Value::Bytes(to_cbor(&c))))
            } else {
                Value::Bytes(to_cbor(&Value::Tag(tag::COMID, Box::new(c))))
            }
        })
        .collect();
        let profile_value = if profile.starts_with("tag:") {
            Value::Tag(tag::URI, Box::new(Value::Text(profile.into())))
        } else {
            Value::Text(profile.into())
        };
        let corim = Value::Map(vec![
            (int(0), Value::Text(corim_id.into())),
            (int(1), Value::Array(comids)),
            (int(3), profile_value),
        ]);
        let corim = if tagged {
            Value::Tag(tag::CORIM_UNSIGNED, Box::new(corim))
        } else {
            corim
        };
        to_cbor(&corim)
    }

    /// The environment-map of this device's class (PSA implementation id, vendor, model),
    /// with one more entry (`extra`: key, value) when given.
    fn environment(&self, extra: Option<(i64, Value)>) -> Value {
        let class = vec![
            (
                int(0),
                Value::Tag(
                    tag::PSA_IMPL_ID,
                    Box::new(Value::Bytes(self.implementation_id.clone())),
                ),
            ),
            (int(1), Value::Text("ACME".into())),
            (int(2), Value::Text("RoadRunner".into())),
        ];
        let mut env = vec![(int(0), Value::Map(class))];
        if let Some((k, v)) = extra {
            env.push((int(k), v));
        }
        Value::Map(env)
    }

    /// The triples-map with the reference-value triples: one measurement-map per software
    /// component (its PSA refval id and its digest).
    fn reference_triples(&self) -> Value {
        let measurements = self
            .sw_components
            .iter()
            .map(|c| {
                Value::Map(vec![
                    (
                        int(0),
                        Value::Tag(
                            tag::PSA_REFVAL_ID,
                            Box::new(Value::Map(vec![
                                (int(1), Value::Text(c.measurement_type.clone())),
                                (int(4), Value::Text(c.version.clone())),
                                (int(5), Value::Bytes(c.signer_id.clone())),
                            ])),
                        ),
                    ),
                    (
                        int(1),
                        Value::Map(vec![(
                            int(2),
                            Value::Array(vec![Value::Array(vec![
                                int(1),
                                Value::Bytes(c.measurement_value.clone()),
                            ])]),
                        )]),
                    ),
                ])
            })
            .collect();
        Value::Map(vec![(
            int(0),
            Value::Array(vec![Value::Array(vec![
                self.environment(None),
                Value::Array(measurements),
            ])]),
        )])
    }

    /// The triples-map with the attest-key triple: the instance (UEID) and its public key.
    fn attest_key_triples(&self) -> Value {
        let ueid = Value::Tag(tag::UEID, Box::new(Value::Bytes(self.instance_id.clone())));
        Value::Map(vec![(
            int(3),
            Value::Array(vec![Value::Array(vec![
                self.environment(Some((1, ueid))),
                Value::Array(vec![Value::Tag(
                    tag::PKIX_BASE64_KEY,
                    Box::new(Value::Text(self.public_key_pem())),
                )]),
            ])]),
        )])
    }

    /// The claims payload for a nonce, claim order as in the upstream vectors.
    pub fn claims(&self, nonce: &[u8]) -> Vec<u8> {
        let sw = self
            .sw_components
            .iter()
            .map(|c| {
                Value::Map(vec![
                    (int(1), Value::Text(c.measurement_type.clone())),
                    (int(2), Value::Bytes(c.measurement_value.clone())),
                    (int(4), Value::Text(c.version.clone())),
                    (int(5), Value::Bytes(c.signer_id.clone())),
                ])
            })
            .collect();
        let claims = Value::Map(vec![
            (int(claim::PROFILE), Value::Text(PSA_TOKEN_PROFILE.into())),
            (int(claim::CLIENT_ID), int(1)),
            (int(claim::LIFECYCLE), int(12288)),
            (
                int(claim::IMPLEMENTATION_ID),
                Value::Bytes(self.implementation_id.clone()),
            ),
            (
                int(claim::BOOT_SEED),
                Value::Bytes([0xde, 0xad, 0xbe, 0xef].repeat(8)),
            ),
            (int(claim::SW_COMPONENTS), Value::Array(sw)),
            (int(claim::NONCE), Value::Bytes(nonce.to_vec())),
            (
                int(claim::INSTANCE_ID),
                Value::Bytes(self.instance_id.clone()),
            ),
            (
                int(claim::VSI),
                Value::Text("https://psa-verifier.org".into()),
            ),
        ]);
        to_cbor(&claims)
    }

    /// A PSA token for a nonce (32, 48 or 64 bytes), signed with this device's key.
    pub fn token(&self, nonce: &[u8]) -> Vec<u8> {
        sign_cose(&self.key, &self.claims(nonce))
    }
}

/// Mints a device's tokens for fresh nonces on the load's hot path: the signed structure and
/// the envelope are encoded once with a marker where the nonce goes, so a token is two copies,
/// a patched nonce and one ES256 signature.
pub struct TokenMinter {
    key: SigningKey,
    /// `Sig_structure` (RFC 9052 §4.4) over the payload, nonce at `tbs_nonce_at`.
    tbs: Vec<u8>,
    tbs_nonce_at: usize,
    /// The tagged COSE_Sign1, nonce at `envelope_nonce_at`, the signature its last 64 bytes.
    envelope: Vec<u8>,
    envelope_nonce_at: usize,
    nonce_len: usize,
}

impl TokenMinter {
    /// Prepares a minter for `device` and nonces of `nonce_len` bytes.
    pub fn new(device: &Device, nonce_len: usize) -> TokenMinter {
        let marker = vec![0xAAu8; nonce_len];
        let payload = device.claims(&marker);
        let at = |bytes: &[u8]| {
            let found: Vec<usize> = (0..=bytes.len() - nonce_len)
                .filter(|&i| bytes[i..i + nonce_len] == marker[..])
                .collect();
            assert_eq!(found.len(), 1, "the nonce marker appears exactly once");
            found[0]
        };
        let tbs = sig_structure(&PROTECTED_ES256, &payload);
        let envelope = cose_sign1(&payload, &[0u8; 64]);
        TokenMinter {
            key: device.key.clone(),
            tbs_nonce_at: at(&tbs),
            tbs,
            envelope_nonce_at: at(&envelope),
            envelope,
            nonce_len,
        }
    }

    /// A token for this nonce.
    pub fn mint(&self, nonce: &[u8]) -> Vec<u8> {
        assert_eq!(
            nonce.len(),
            self.nonce_len,
            "nonce length fixed at construction"
        );
        let mut tbs = self.tbs.clone();
        tbs[self.tbs_nonce_at..self.tbs_nonce_at + self.nonce_len].copy_from_slice(nonce);
        let sig = self.key.sign(&tbs);
        let mut token = self.envelope.clone();
        token[self.envelope_nonce_at..self.envelope_nonce_at + self.nonce_len]
            .copy_from_slice(nonce);
        let n = token.len();
        token[n - 64..].copy_from_slice(&sig);
        token
    }
}

/// A comid-map: language, tag identity, the ACME entity and its roles, and `triples`.
fn comid(tag_id: &[u8], triples: Value) -> Value {
    Value::Map(vec![
        (int(0), Value::Text("en-GB".into())),
        (
            int(1),
            Value::Map(vec![(int(0), Value::Bytes(tag_id.to_vec()))]),
        ),
        (
            int(2),
            Value::Array(vec![Value::Map(vec![
                (int(0), Value::Text("ACME Ltd.".into())),
                (
                    int(1),
                    Value::Tag(
                        tag::URI,
                        Box::new(Value::Text("https://acme.example".into())),
                    ),
                ),
                (int(2), Value::Array(vec![int(0), int(1), int(2)])),
            ])]),
        ),
        (int(4), triples),
    ])
}

fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

fn to_cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).expect("CBOR encodes into a Vec");
    out
}

/// The protected header `{1: -7}` (ES256), as a bstr's content.
const PROTECTED_ES256: [u8; 3] = [0xa1, 0x01, 0x26];

fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    to_cbor(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(vec![]),
        Value::Bytes(payload.to_vec()),
    ]))
}

/// Tagged COSE_Sign1 with ES256 over `payload`.
pub fn sign_cose(key: &SigningKey, payload: &[u8]) -> Vec<u8> {
    let sig = key.sign(&sig_structure(&PROTECTED_ES256, payload));
    cose_sign1(payload, &sig)
}

/// The tagged COSE_Sign1 envelope: protected ES256 header, no unprotected ones.
fn cose_sign1(payload: &[u8], sig: &[u8]) -> Vec<u8> {
    to_cbor(&Value::Tag(
        tag::COSE_SIGN1,
        Box::new(Value::Array(vec![
            Value::Bytes(PROTECTED_ES256.to_vec()),
            Value::Map(vec![]),
            Value::Bytes(payload.to_vec()),
            Value::Bytes(sig.to_vec()),
        ])),
    ))
}

/// The claims of a PSA token that verification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// Claim 2396.
    pub implementation_id: Vec<u8>,
    /// Claim 256.
    pub instance_id: Vec<u8>,
    /// Claim 10.
    pub nonce: Vec<u8>,
    /// Claim 2399.
    pub sw_components: Vec<SwComponent>,
    /// Claim 265.
    pub profile: String,
}

/// A parsed (not yet verified) PSA token.
pub struct ParsedToken {
    /// The claims.
    pub claims: TokenClaims,
    protected: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl ParsedToken {
    /// Parses a tagged COSE_Sign1 PSA token.
    pub fn parse(bytes: &[u8]) -> Result<ParsedToken, PsaError> {
        let v: Value =
            ciborium::de::from_reader(bytes).map_err(|e| malformed("token", e.to_string()))?;
        let inner = match v {
            Value::Tag(tag::COSE_SIGN1, inner) => *inner,
            _ => return Err(malformed("token", "not a tagged COSE_Sign1")),
        };
        let Value::Array(parts) = inner else {
            return Err(malformed("token", "COSE_Sign1 is not an array"));
        };
        let [Value::Bytes(protected), _, Value::Bytes(payload), Value::Bytes(signature)] =
            <[Value; 4]>::try_from(parts)
                .map_err(|_| malformed("token", "COSE_Sign1 needs 4 elements"))?
        else {
            return Err(malformed(
                "token",
                "COSE_Sign1 elements have the wrong types",
            ));
        };
        let claims = parse_claims(&payload)?;
        Ok(ParsedToken {
            claims,
            protected,
            payload,
            signature,
        })
    }

    /// Checks the ES256 signature against a PEM public key.
    pub fn verify(&self, public_key_pem: &str) -> Result<(), PsaError> {
        let key = PublicKey::from_pem(public_key_pem).ok_or(PsaError::BadSignature)?;
        let signed = sig_structure(&self.protected, &self.payload);
        if key.verifier().verifies(&signed, &self.signature) {
            Ok(())
        } else {
            Err(PsaError::BadSignature)
        }
    }
}

fn map_get(m: &[(Value, Value)], key: i64) -> Option<&Value> {
    m.iter()
        .find(|(k, _)| k.as_integer().map(i128::from) == Some(key as i128))
        .map(|(_, v)| v)
}

fn bytes_of(v: Option<&Value>) -> Option<Vec<u8>> {
    v.and_then(|v| v.as_bytes().cloned())
}

fn text_of(v: Option<&Value>) -> Option<String> {
    v.and_then(|v| v.as_text().map(str::to_string))
}

fn parse_claims(payload: &[u8]) -> Result<TokenClaims, PsaError> {
    let v: Value =
        ciborium::de::from_reader(payload).map_err(|e| malformed("token", e.to_string()))?;
    let Value::Map(m) = v else {
        return Err(malformed("token", "claims are not a map"));
    };
    let need = |key: i64, name: &str| {
        bytes_of(map_get(&m, key)).ok_or_else(|| malformed("token", format!("missing {name}")))
    };
    let sw = match map_get(&m, claim::SW_COMPONENTS) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|c| c.as_map())
            .map(|c| SwComponent {
                measurement_type: text_of(map_get(c, 1)).unwrap_or_default(),
                measurement_value: bytes_of(map_get(c, 2)).unwrap_or_default(),
                version: text_of(map_get(c, 4)).unwrap_or_default(),
                signer_id: bytes_of(map_get(c, 5)).unwrap_or_default(),
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(TokenClaims {
        implementation_id: need(claim::IMPLEMENTATION_ID, "implementation-id")?,
        instance_id: need(claim::INSTANCE_ID, "instance-id")?,
        nonce: need(claim::NONCE, "nonce")?,
        sw_components: sw,
        profile: text_of(map_get(&m, claim::PROFILE)).unwrap_or_default(),
    })
}

/// A reference value for one firmware component, as provisioned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceValue {
    /// Measurement type (`BL`), when given.
    pub measurement_type: Option<String>,
    /// Version, when given.
    pub version: Option<String>,
    /// Accepted digests.
    pub digests: Vec<Vec<u8>>,
}

/// What one CoRIM provisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endorsements {
    /// The CoRIM id, as text (hex for a bstr id).
    pub corim_id: String,
    /// The profile.
    pub profile: String,
    /// Whether it carried tag 501.
    pub tagged: bool,
    /// Reference values per implementation id.
    pub reference_values: Vec<(Vec<u8>, Vec<ReferenceValue>)>,
    /// Trust anchors: (implementation id, instance id, PEM key).
    pub trust_anchors: Vec<(Vec<u8>, Vec<u8>, String)>,
}

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tag(_, inner) => untag(inner),
        other => other,
    }
}

fn implementation_id_of(env: &Value) -> Option<Vec<u8>> {
    let class = map_get(env.as_map()?, 0)?.as_map()?;
    match map_get(class, 0)? {
        Value::Tag(tag::PSA_IMPL_ID | tag::TAGGED_BYTES, b) => b.as_bytes().cloned(),
        _ => None,
    }
}

/// Parses an unsigned CoRIM (tagged or not) into what it provisions.
pub fn parse_corim(bytes: &[u8]) -> Result<Endorsements, PsaError> {
    let v: Value =
        ciborium::de::from_reader(bytes).map_err(|e| malformed("CoRIM", e.to_string()))?;
    let (tagged, corim) = match v {
        Value::Tag(tag::CORIM_UNSIGNED, inner) => (true, *inner),
        Value::Tag(t, _) => return Err(malformed("CoRIM", format!("unexpected tag {t}"))),
        other => (false, other),
    };
    let Value::Map(m) = corim else {
        return Err(malformed("CoRIM", "not a map"));
    };
    let corim_id = match map_get(&m, 0) {
        Some(Value::Text(t)) => t.clone(),
        Some(Value::Bytes(b)) => hex::encode(b),
        _ => return Err(malformed("CoRIM", "missing corim-id")),
    };
    let profile = map_get(&m, 3)
        .map(untag)
        .and_then(|p| p.as_text().map(str::to_string))
        .unwrap_or_default();
    let mut out = Endorsements {
        corim_id,
        profile,
        tagged,
        ..Default::default()
    };
    let Some(Value::Array(tags)) = map_get(&m, 1) else {
        return Err(malformed("CoRIM", "missing tags"));
    };
    for t in tags {
        let comid: Value = match t {
            // `#6.506(bstr .cbor comid)` (spec form, sets B and C).
            Value::Tag(tag::COMID, b) => {
                let Some(b) = b.as_bytes() else { continue };
                ciborium::de::from_reader(b.as_slice())
                    .map_err(|e| malformed("CoMID", e.to_string()))?
            }
            // `bstr .cbor #6.506(comid)` (older encoding, set A).
            Value::Bytes(b) => match ciborium::de::from_reader::<Value, _>(b.as_slice()) {
                Ok(Value::Tag(tag::COMID, inner)) => *inner,
                _ => continue,
            },
            _ => continue,
        };
        let triples = comid
            .as_map()
            .and_then(|c| map_get(c, 4))
            .and_then(Value::as_map)
            .ok_or_else(|| malformed("CoMID", "missing triples"))?;
        if let Some(Value::Array(rvs)) = map_get(triples, 0) {
            for triple in rvs {
                let Some([env, Value::Array(meas)]) = triple.as_array().map(Vec::as_slice) else {
                    continue;
                };
                let impl_id = implementation_id_of(env).ok_or_else(|| {
                    malformed("CoMID", "reference value without implementation id")
                })?;
                let values = meas
                    .iter()
                    .filter_map(Value::as_map)
                    .map(|mm| reference_value(mm))
                    .collect();
                out.reference_values.push((impl_id, values));
            }
        }
        if let Some(Value::Array(aks)) = map_get(triples, 3) {
            for triple in aks {
                let Some([env, Value::Array(keys)]) = triple.as_array().map(Vec::as_slice) else {
                    continue;
                };
                let impl_id = implementation_id_of(env)
                    .ok_or_else(|| malformed("CoMID", "key without implementation id"))?;
                let instance = env
                    .as_map()
                    .and_then(|e| map_get(e, 1))
                    .map(untag)
                    .and_then(|i| i.as_bytes().cloned())
                    .ok_or_else(|| malformed("CoMID", "key without instance id"))?;
                if let Some(pem) = keys.first().map(untag).and_then(Value::as_text) {
                    out.trust_anchors.push((impl_id, instance, pem.to_string()));
                }
            }
        }
    }
    Ok(out)
}

fn reference_value(m: &[(Value, Value)]) -> ReferenceValue {
    let (mut measurement_type, mut version) = (None, None);
    if let Some(Value::Tag(tag::PSA_REFVAL_ID, id)) = map_get(m, 0) {
        if let Some(id) = id.as_map() {
            measurement_type = text_of(map_get(id, 1));
            version = text_of(map_get(id, 4));
        }
    }
    let mval = map_get(m, 1).and_then(Value::as_map);
    if measurement_type.is_none() {
        // 2025 profile: the component name sits in the measurement values (key 11).
        measurement_type = mval.and_then(|v| text_of(map_get(v, 11)));
    }
    let digests = mval
        .and_then(|v| map_get(v, 2))
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .filter_map(|d| {
                    d.as_array()
                        .and_then(|a| a.get(1))
                        .and_then(|b| b.as_bytes().cloned())
                })
                .collect()
        })
        .unwrap_or_default();
    ReferenceValue {
        measurement_type,
        version,
        digests,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_devices_round_trip() {
        let d = Device::synthetic(7, 3);
        assert_eq!(d.implementation_id.len(), 32);
        assert_eq!(d.instance_id.len(), 33);
        let corim = d.corim(
            crate::veraison::release::PSA_PROFILE_LEGACY,
            true,
            "corim-1",
        );
        let e = parse_corim(&corim).unwrap();
        assert!(e.tagged);
        assert_eq!(e.corim_id, "corim-1");
        assert_eq!(e.reference_values.len(), 1);
        assert_eq!(e.reference_values[0].1.len(), 3);
        assert_eq!(e.trust_anchors.len(), 1);
        let nonce = [9u8; 32];
        let t = ParsedToken::parse(&d.token(&nonce)).unwrap();
        assert_eq!(t.claims.nonce, nonce);
        t.verify(&e.trust_anchors[0].2).unwrap();
        // Another device's key does not verify it.
        let other = Device::synthetic(7, 4);
        assert_eq!(
            t.verify(&other.public_key_pem()),
            Err(PsaError::BadSignature)
        );
    }

    #[test]
    fn minter_patches_the_nonce_in_place() {
        let d = Device::synthetic(1, 1);
        let m = TokenMinter::new(&d, 32);
        for nonce in [[3u8; 32], [0xAA; 32], std::array::from_fn(|i| i as u8)] {
            let minted = m.mint(&nonce);
            let t = ParsedToken::parse(&minted).unwrap();
            assert_eq!(t.payload, d.claims(&nonce));
            assert_eq!(t.claims.nonce, nonce);
            // The same bytes as the general encoder's, signature aside; and it verifies.
            let general = sign_cose(&d.key, &d.claims(&nonce));
            assert_eq!(minted.len(), general.len());
            assert_eq!(minted[..minted.len() - 64], general[..general.len() - 64]);
            t.verify(&d.public_key_pem()).unwrap();
        }
        let other = Device::synthetic(1, 2);
        assert_eq!(
            ParsedToken::parse(&TokenMinter::new(&other, 32).mint(&[3; 32]))
                .unwrap()
                .verify(&d.public_key_pem()),
            Err(PsaError::BadSignature)
        );
    }
}
