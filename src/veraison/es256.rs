//! ES256 (ECDSA on P-256 with SHA-256), the one signature of the contract (PSA tokens, EARs),
//! on one implementation for the whole project: aws-lc-rs. A key is made from a chosen secret
//! (the synthetic devices' deterministic keys) or afresh; signatures are raw `r‖s` (COSE, JWS);
//! public keys travel as SEC1 points, SPKI DER and PEM (CoRIMs), and JWK coordinates (the
//! verification well-known).

use std::sync::Arc;

use aws_lc_rs::agreement;
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, ParsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroizing;

use super::p256_table::{self, KeyTable};

/// The DER of a P-256 `SubjectPublicKeyInfo` up to its point (RFC 5480: id-ecPublicKey,
/// prime256v1, a 66-byte BIT STRING): the same 26 bytes before every uncompressed key.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A P-256 signing key.
#[derive(Clone)]
pub struct SigningKey {
    pair: EcdsaKeyPair,
    /// The secret, big-endian, for the table's signing ([`p256_table::sign`]); wiped on drop.
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({:?})", self.public_key())
    }
}

impl SigningKey {
    /// The key whose secret is `scalar` (32 bytes, big-endian); `None` when it is not a valid
    /// P-256 secret (zero, or not below the group order).
    pub fn from_scalar(scalar: &[u8]) -> Option<SigningKey> {
        let secret = agreement::PrivateKey::from_private_key(&agreement::ECDH_P256, scalar).ok()?;
        let public = secret.compute_public_key().ok()?;
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            scalar,
            public.as_ref(),
        )
        .ok()?;
        Some(SigningKey {
            pair,
            secret: Zeroizing::new(scalar.try_into().ok()?),
        })
    }

    /// A fresh random key.
    pub fn generate() -> SigningKey {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("the system's randomness makes a key");
        let secret = pair
            .private_key()
            .as_be_bytes()
            .expect("a P-256 secret encodes")
            .as_ref()
            .try_into()
            .expect("a P-256 secret is 32 bytes");
        SigningKey {
            pair,
            secret: Zeroizing::new(secret),
        }
    }

    /// Signs `message`: the raw 64-byte `r‖s`; through the generator's table where the
    /// platform has it (a third less CPU than aws-lc-rs's signing: one token per verification
    /// session), else aws-lc-rs's. **Not constant-time** on the table's way (the nonce indexes
    /// the table, its inverse is variable-time): every key the project signs with is synthetic
    /// (devices derived from a seed, the stand-in's), and no other may be given to it.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let hash = digest(&SHA256, message);
        let hash = hash.as_ref().try_into().expect("SHA-256 is 32 bytes");
        if let Some(sig) = p256_table::sign(&self.secret, hash) {
            return sig.to_vec();
        }
        self.pair
            .sign(&SystemRandom::new(), message)
            .expect("ES256 signing with the system's randomness")
            .as_ref()
            .to_vec()
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let point: [u8; 65] = self
            .pair
            .public_key()
            .as_ref()
            .try_into()
            .expect("an uncompressed P-256 point is 65 bytes");
        PublicKey { point }
    }

    /// The secret, 32 bytes big-endian.
    pub fn scalar(&self) -> Vec<u8> {
        self.secret.to_vec()
    }
}

/// A P-256 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    /// Uncompressed SEC1: `04 ‖ x ‖ y`.
    point: [u8; 65],
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.point))
    }
}

impl PublicKey {
    /// From a SEC1 point (uncompressed), checked to be on the curve.
    pub fn from_sec1(bytes: &[u8]) -> Option<PublicKey> {
        let point: [u8; 65] = bytes.try_into().ok()?;
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).ok()?;
        Some(PublicKey { point })
    }

    /// From JWK coordinates (32 bytes each).
    pub fn from_xy(x: &[u8], y: &[u8]) -> Option<PublicKey> {
        if x.len() != 32 || y.len() != 32 {
            return None;
        }
        let mut point = [0u8; 65];
        point[0] = 0x04;
        point[1..33].copy_from_slice(x);
        point[33..].copy_from_slice(y);
        PublicKey::from_sec1(&point)
    }

    /// From a PEM `PUBLIC KEY` (SPKI) of an uncompressed P-256 point.
    pub fn from_pem(pem: &str) -> Option<PublicKey> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body).ok()?;
        PublicKey::from_spki_der(&der)
    }

    /// From SPKI DER.
    pub fn from_spki_der(der: &[u8]) -> Option<PublicKey> {
        let point = der.strip_prefix(&SPKI_PREFIX[..])?;
        PublicKey::from_sec1(point)
    }

    /// The uncompressed SEC1 point.
    pub fn sec1(&self) -> &[u8; 65] {
        &self.point
    }

    /// The x coordinate.
    pub fn x(&self) -> &[u8] {
        &self.point[1..33]
    }

    /// The y coordinate.
    pub fn y(&self) -> &[u8] {
        &self.point[33..]
    }

    /// SPKI DER.
    pub fn spki_der(&self) -> Vec<u8> {
        [&SPKI_PREFIX[..], &self.point[..]].concat()
    }

    /// PEM `PUBLIC KEY`, 64 columns, LF line ends.
    pub fn pem(&self) -> String {
        let b64 = STANDARD.encode(self.spki_der());
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }

    /// The key parsed once for verifying many signatures.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            parsed: ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.point)
                .expect("checked on the curve when made"),
            table: None,
        }
    }

    /// [`PublicKey::verifier`] with a table of the key's multiples made once (0.5 MiB, a few
    /// milliseconds), for a key that verifies a signature per request: about a third of the
    /// CPU per verification where the platform has it (`p256_table`).
    pub fn verifier_for_many(&self) -> Verifier {
        let x = self.x().try_into().expect("32 bytes");
        let y = self.y().try_into().expect("32 bytes");
        Verifier {
            table: KeyTable::new(x, y).map(Arc::new),
            ..self.verifier()
        }
    }
}

/// A public key ready to verify signatures (parsed once).
#[derive(Clone, Debug)]
pub struct Verifier {
    /// aws-lc-rs's key: the verdict on whatever the table does not accept.
    parsed: ParsedPublicKey,
    /// The key's multiples, when made ([`PublicKey::verifier_for_many`]).
    table: Option<Arc<KeyTable>>,
}

impl Verifier {
    /// Whether `signature` (raw `r‖s`) signs `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        if let Some(table) = &self.table {
            let hash = digest(&SHA256, message);
            let hash = hash.as_ref().try_into().expect("SHA-256 is 32 bytes");
            if table.accepts(hash, signature) {
                return true;
            }
        }
        self.parsed.verify_sig(message, signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_from_a_scalar_is_that_key_and_signs_what_its_public_half_verifies() {
        // RFC 6979 A.2.5's P-256 key: its public point is known.
        let d = hex::decode("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721")
            .unwrap();
        let key = SigningKey::from_scalar(&d).unwrap();
        assert_eq!(
            hex::encode_upper(key.public_key().x()),
            "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6"
        );
        assert_eq!(
            hex::encode_upper(key.public_key().y()),
            "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299"
        );
        assert_eq!(key.scalar(), d);
        let sig = key.sign(b"sample");
        let v = key.public_key().verifier();
        assert!(v.verifies(b"sample", &sig));
        assert!(!v.verifies(b"sampLe", &sig));
        assert!(SigningKey::from_scalar(&[0u8; 32]).is_none());
        assert!(
            SigningKey::from_scalar(&[0xffu8; 32]).is_none(),
            "above the order"
        );
    }

    #[test]
    fn a_verifier_for_many_takes_the_tables_way_and_keeps_aws_lcs_verdict() {
        let key = SigningKey::generate();
        let verifier = key.public_key().verifier_for_many();
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        assert!(verifier.table.is_some(), "x86-64 Linux has the table");
        let sig = key.sign(b"evidence");
        assert!(verifier.verifies(b"evidence", &sig));
        assert!(!verifier.verifies(b"evidencE", &sig));
        assert!(!verifier.verifies(b"evidence", &sig[..40]));
    }

    #[test]
    fn public_keys_round_trip_through_pem_and_jwk_coordinates() {
        let key = SigningKey::generate().public_key();
        let pem = key.pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(PublicKey::from_pem(&pem), Some(key));
        assert_eq!(PublicKey::from_xy(key.x(), key.y()), Some(key));
        let mut off_curve = *key.sec1();
        off_curve[64] ^= 1;
        assert_eq!(PublicKey::from_sec1(&off_curve), None);
    }
}
