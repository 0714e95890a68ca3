//! ES256 verification for a key that verifies many signatures (the service's EAR key: one
//! check per verification session under load): `u1·G + u2·Q` summed from two tables of
//! precomputed multiples, one for the generator (shared by all keys) and one made once per key,
//! so that a verification is at most 64 point additions and no doubling, where aws-lc's own
//! verification doubles 255 times for the key's point.
//!
//! The field and point arithmetic is aws-lc's: its nistz256 assembly (the code its own
//! verification runs), linked from the `aws-lc-sys` this crate pins to one exact version
//! (`Cargo.toml`), whose symbols carry that version in their prefix; a test fails when
//! `Cargo.lock` holds a second aws-lc-sys (an aws-lc-rs moved on without this pin). Only the
//! tables, the walk over them and the scalar bookkeeping are this module's.
//!
//! Signing ([`sign`]) takes `k·G` from the generator's table likewise: at most 32 additions,
//! where aws-lc's signing adds 37 times after a constant-time scan of each window.
//!
//! A signature the walk accepts is valid: acceptance needs `x(u1·G + u2·Q) ≡ r`, which a wrong
//! sum meets no more often than a forgery. Anything the walk rejects is decided by aws-lc-rs's
//! own verification ([`super::es256::Verifier`]), so that an edge case of the walk (a partial
//! sum meeting the very multiple it adds, which the affine addition does not double) costs
//! time, never a wrong verdict. The inverses modulo n are [`super::modinv`]'s. Only on x86-64
//! Linux (the assembly's symbols as linked there); elsewhere [`KeyTable::new`] and [`sign`]
//! return `None` and ES256 is aws-lc-rs's alone.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use std::sync::OnceLock;

/// Bits of a scalar each table window covers.
const WINDOW_BITS: usize = 8;
/// Windows over a 256-bit scalar.
const WINDOWS: usize = 256 / WINDOW_BITS;
/// Non-zero digits per window: the multiples 1..=255 of the window's base.
const DIGITS: usize = (1 << WINDOW_BITS) - 1;

/// A field element or scalar: four little-endian 64-bit limbs.
type Limbs = [u64; 4];

/// The field prime p.
const P: Limbs = [
    0xffff_ffff_ffff_ffff,
    0x0000_0000_ffff_ffff,
    0,
    0xffff_ffff_0000_0001,
];
/// The group order n.
const N: Limbs = [
    0xf3b9_cac2_fc63_2551,
    0xbce6_faad_a717_9e84,
    0xffff_ffff_ffff_ffff,
    0xffff_ffff_0000_0000,
];
/// 1 in the field's Montgomery form (2^256 mod p).
const ONE_MONT: Limbs = [
    0x1,
    0xffff_ffff_0000_0000,
    0xffff_ffff_ffff_ffff,
    0xffff_fffe,
];
/// 2^512 mod p: multiplying by it puts a field element into Montgomery form.
const RR_P: Limbs = [
    0x3,
    0xffff_fffb_ffff_ffff,
    0xffff_ffff_ffff_fffe,
    0x4_ffff_fffd,
];
/// 2^512 mod n: the same for scalars.
const RR_N: Limbs = [
    0x8324_4c95_be79_eea2,
    0x4699_799c_49bd_6fa6,
    0x2845_b239_2b6b_ec59,
    0x66e1_2d94_f3d9_5620,
];
/// The generator's coordinates, SEC 2, big-endian.
const G_X: [u8; 32] = hex32("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296");
const G_Y: [u8; 32] = hex32("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");

/// A point in Jacobian coordinates, Montgomery form; `Z = 0` is the point at infinity.
#[repr(C, align(32))]
#[derive(Clone, Copy, Default)]
struct Jacobian {
    x: Limbs,
    y: Limbs,
    z: Limbs,
}

/// A point in affine coordinates, Montgomery form (never the point at infinity here).
#[repr(C, align(32))]
#[derive(Clone, Copy, Default)]
struct Affine {
    x: Limbs,
    y: Limbs,
}

/// aws-lc's nistz256 routines (`crypto/fipsmodule/ec/p256-nistz.h`), under the symbol prefix
/// of the pinned aws-lc-sys.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod nistz256 {
    use super::{Affine, Jacobian, Limbs};

    extern "C" {
        /// `res = a·b·2^-256 mod p`.
        #[link_name = "aws_lc_0_47_0_ecp_nistz256_mul_mont"]
        pub fn mul_mont(res: *mut Limbs, a: *const Limbs, b: *const Limbs);
        /// `res = a·a·2^-256 mod p`.
        #[link_name = "aws_lc_0_47_0_ecp_nistz256_sqr_mont"]
        pub fn sqr_mont(res: *mut Limbs, a: *const Limbs);
        /// `res = a·b·2^-256 mod n`.
        #[link_name = "aws_lc_0_47_0_ecp_nistz256_ord_mul_mont"]
        pub fn ord_mul_mont(res: *mut Limbs, a: *const Limbs, b: *const Limbs);
        /// `z = 2^512 / x mod p` (Montgomery in, Montgomery out; 0 for 0), s2n-bignum's.
        #[link_name = "aws_lc_0_47_0_bignum_montinv_p256"]
        pub fn bignum_montinv_p256(z: *mut Limbs, x: *const Limbs);
        /// `r = a + b`, complete (doubles when `a = b`).
        #[link_name = "aws_lc_0_47_0_ecp_nistz256_point_add"]
        pub fn point_add(r: *mut Jacobian, a: *const Jacobian, b: *const Jacobian);
        /// `r = a + b` for an affine `b`; does not double when `a = b`.
        #[link_name = "aws_lc_0_47_0_ecp_nistz256_point_add_affine"]
        pub fn point_add_affine(r: *mut Jacobian, a: *const Jacobian, b: *const Affine);
    }
}

/// Safe wrappers over the assembly: every argument is a valid, aligned, initialised value.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod field {
    use super::{nistz256, Affine, Jacobian, Limbs};

    pub fn mul(a: &Limbs, b: &Limbs) -> Limbs {
        let mut r = [0; 4];
        // SAFETY: three valid 4-limb arrays; the routine reads a and b, writes r.
        unsafe { nistz256::mul_mont(&mut r, a, b) };
        r
    }

    pub fn sqr(a: &Limbs) -> Limbs {
        let mut r = [0; 4];
        // SAFETY: as in `mul`.
        unsafe { nistz256::sqr_mont(&mut r, a) };
        r
    }

    pub fn ord_mul(a: &Limbs, b: &Limbs) -> Limbs {
        let mut r = [0; 4];
        // SAFETY: as in `mul`.
        unsafe { nistz256::ord_mul_mont(&mut r, a, b) };
        r
    }

    /// The inverse of a field element in Montgomery form, in Montgomery form.
    pub fn invert(a: &Limbs) -> Limbs {
        let mut r = [0; 4];
        // SAFETY: as in `mul`.
        unsafe { nistz256::bignum_montinv_p256(&mut r, a) };
        r
    }

    pub fn add(a: &Jacobian, b: &Jacobian) -> Jacobian {
        let mut r = Jacobian::default();
        // SAFETY: valid, 32-byte aligned points.
        unsafe { nistz256::point_add(&mut r, a, b) };
        r
    }

    pub fn add_affine(acc: &mut Jacobian, b: &Affine) {
        let acc: *mut Jacobian = acc;
        // SAFETY: valid, aligned points; the routine allows its output to be its first input
        // (aws-lc calls it so).
        unsafe { nistz256::point_add_affine(acc, acc, b) };
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use super::modinv::inverse_mod_n;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use field::*;

/// The multiples `d·2^(8w)·B` (w < 32, 1 ≤ d ≤ 255) of one base point B, affine: any scalar
/// times B is the sum of one entry per non-zero byte of the scalar.
pub struct KeyTable {
    /// `entries[w·255 + d − 1] = d·2^(8w)·B`.
    entries: Box<[Affine]>,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyTable")
    }
}

/// The generator's table, made on first use.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn generator_table() -> &'static KeyTable {
    static G: OnceLock<KeyTable> = OnceLock::new();
    G.get_or_init(|| KeyTable::build(&G_X, &G_Y))
}

impl KeyTable {
    /// The table of the key at SEC1 coordinates `x`, `y` (big-endian, checked on the curve by
    /// the caller); `None` where the assembly is not available.
    pub fn new(x: &[u8; 32], y: &[u8; 32]) -> Option<KeyTable> {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            // aws-lc picks its ADX/BMI2 code paths from its CPU probe, made by its init.
            aws_lc_rs::init();
            Some(KeyTable::build(x, y))
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        {
            let _ = (x, y);
            None
        }
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn build(x: &[u8; 32], y: &[u8; 32]) -> KeyTable {
        let mut base = Jacobian {
            x: mul(&from_be(x), &RR_P),
            y: mul(&from_be(y), &RR_P),
            z: ONE_MONT,
        };
        let mut jacobian = Vec::with_capacity(WINDOWS * DIGITS);
        for _ in 0..WINDOWS {
            let mut multiple = base;
            jacobian.push(multiple);
            for _ in 1..DIGITS {
                multiple = add(&multiple, &base);
                jacobian.push(multiple);
            }
            base = add(&multiple, &base);
        }
        KeyTable {
            entries: to_affine(&jacobian),
        }
    }

    /// Whether `(r, s)` signs the message whose SHA-256 is `digest`, by the sum over the
    /// tables. `false` means "not shown valid here", not "invalid": see the module's note.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    pub fn accepts(&self, digest: &[u8; 32], signature: &[u8]) -> bool {
        let Ok(signature) = <&[u8; 64]>::try_from(signature) else {
            return false;
        };
        let r = from_be(signature[..32].try_into().expect("32 bytes"));
        let s = from_be(signature[32..].try_into().expect("32 bytes"));
        if !in_scalar_range(&r) || !in_scalar_range(&s) {
            return false;
        }
        let e = reduce_once(&from_be(digest));
        let w = inverse_mod_n(&s);
        // Montgomery: (e·2^256)·w·2^-256 = e·w mod n.
        let u1 = ord_mul(&ord_mul(&e, &RR_N), &w);
        let u2 = ord_mul(&ord_mul(&r, &RR_N), &w);
        let mut sum = Jacobian::default();
        generator_table().add_multiple(&mut sum, &u1);
        self.add_multiple(&mut sum, &u2);
        x_matches(&sum, &r)
    }

    /// Never accepts where the assembly is not linked.
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    pub fn accepts(&self, _digest: &[u8; 32], _signature: &[u8]) -> bool {
        false
    }

    /// `acc += k·B`, one entry per non-zero byte of `k`.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn add_multiple(&self, acc: &mut Jacobian, k: &Limbs) {
        for (window, byte) in k.iter().flat_map(|limb| limb.to_le_bytes()).enumerate() {
            if byte != 0 {
                add_affine(acc, &self.entries[window * DIGITS + usize::from(byte) - 1]);
            }
        }
    }
}

/// An ES256 signature (raw `r‖s`) of the message whose SHA-256 is `digest`, by the secret
/// `secret` (big-endian, `0 < d < n`), its nonce from `rand`'s thread generator and `k·G` from
/// the generator's table; `None` where the assembly is not available. Not constant-time (the
/// table is indexed by the nonce's bytes): for the project's synthetic keys only (devices
/// derived from a seed, the stand-in's), which protect nothing.
pub fn sign(secret: &[u8; 32], digest: &[u8; 32]) -> Option<[u8; 64]> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        aws_lc_rs::init();
        let d = from_be(secret);
        if !in_scalar_range(&d) {
            return None;
        }
        let e = reduce_once(&from_be(digest));
        let table = generator_table();
        loop {
            let k: Limbs = rand::random();
            if !in_scalar_range(&k) {
                continue;
            }
            let mut point = Jacobian::default();
            table.add_multiple(&mut point, &k);
            // x = X / Z², from Montgomery form to plain; then r = x mod n (x < p < 2n).
            let z_inv2 = sqr(&invert(&point.z));
            let x = mul(&mul(&point.x, &z_inv2), &[1, 0, 0, 0]);
            let r = reduce_once(&x);
            if r == [0; 4] {
                continue;
            }
            let k_inv = inverse_mod_n(&k);
            // s = k⁻¹·(e + r·d) mod n, each product through Montgomery form as in `accepts`.
            let rd = ord_mul(&ord_mul(&r, &RR_N), &d);
            let (sum, carry) = add_carry(&e, &rd);
            let sum = if carry || !less_than(&sum, &N) {
                sub(&sum, &N)
            } else {
                sum
            };
            let s = ord_mul(&ord_mul(&sum, &RR_N), &k_inv);
            if s == [0; 4] {
                continue;
            }
            let mut out = [0u8; 64];
            out[..32].copy_from_slice(&to_be(&r));
            out[32..].copy_from_slice(&to_be(&s));
            return Some(out);
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        let _ = (secret, digest);
        None
    }
}

/// `a mod n` for `a < 2n` (a digest, or an x coordinate below p).
fn reduce_once(a: &Limbs) -> Limbs {
    if less_than(a, &N) {
        *a
    } else {
        sub(a, &N)
    }
}

/// Whether the affine x of `point` is `r` or `r + n` (the signer reduced x mod n), compared
/// as `X = r·Z²` without an inversion, as aws-lc does.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn x_matches(point: &Jacobian, r: &Limbs) -> bool {
    if point.z == [0; 4] {
        return false;
    }
    let z2 = sqr(&point.z);
    // r is not in Montgomery form, so r·(Z²·2^256)·2^-256 = r·Z² plain; X plain likewise.
    let x = mul(&point.x, &[1, 0, 0, 0]);
    if mul(r, &z2) == x {
        return true;
    }
    let (r_plus_n, carry) = add_carry(r, &N);
    !carry && less_than(&r_plus_n, &P) && mul(&r_plus_n, &z2) == x
}

/// Jacobian points to affine with one field inversion for all (Montgomery's trick); none is
/// the point at infinity (every multiple in a table is below the group order).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn to_affine(points: &[Jacobian]) -> Box<[Affine]> {
    let mut prefix = Vec::with_capacity(points.len());
    let mut acc = ONE_MONT;
    for p in points {
        acc = mul(&acc, &p.z);
        prefix.push(acc);
    }
    let mut inv = invert(&acc);
    let mut out = vec![Affine::default(); points.len()];
    for i in (0..points.len()).rev() {
        let z_inv = if i == 0 {
            inv
        } else {
            mul(&inv, &prefix[i - 1])
        };
        inv = mul(&inv, &points[i].z);
        let z_inv2 = sqr(&z_inv);
        out[i] = Affine {
            x: mul(&points[i].x, &z_inv2),
            y: mul(&points[i].y, &mul(&z_inv2, &z_inv)),
        };
    }
    out.into_boxed_slice()
}

/// Big-endian bytes to little-endian limbs.
fn from_be(bytes: &[u8; 32]) -> Limbs {
    std::array::from_fn(|i| {
        let start = 24 - 8 * i;
        u64::from_be_bytes(bytes[start..start + 8].try_into().expect("8 bytes"))
    })
}

/// Little-endian limbs to big-endian bytes.
fn to_be(limbs: &Limbs) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, limb) in limbs.iter().enumerate() {
        out[24 - 8 * i..32 - 8 * i].copy_from_slice(&limb.to_be_bytes());
    }
    out
}

/// `0 < k < n`.
fn in_scalar_range(k: &Limbs) -> bool {
    *k != [0; 4] && less_than(k, &N)
}

/// `a < b`.
fn less_than(a: &Limbs, b: &Limbs) -> bool {
    a.iter().rev().cmp(b.iter().rev()) == std::cmp::Ordering::Less
}

/// `a − b` for `a ≥ b`.
fn sub(a: &Limbs, b: &Limbs) -> Limbs {
    let mut borrow = false;
    std::array::from_fn(|i| {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        borrow = b1 || b2;
        d
    })
}

/// `a + b` and whether it carried out of 256 bits.
fn add_carry(a: &Limbs, b: &Limbs) -> (Limbs, bool) {
    let mut carry = false;
    let sum = std::array::from_fn(|i| {
        let (s, c1) = a[i].overflowing_add(b[i]);
        let (s, c2) = s.overflowing_add(u64::from(carry));
        carry = c1 || c2;
        s
    });
    (sum, carry)
}

/// 32 bytes from 64 hex digits, at compile time.
const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let s = s.as_bytes();
    assert!(s.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(s[2 * i]) << 4 | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

#[cfg(all(test, target_arch = "x86_64", target_os = "linux"))]
mod tests {
    use super::*;
    use aws_lc_rs::digest::{digest, SHA256};
    use aws_lc_rs::encoding::AsBigEndian;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        EcdsaKeyPair, KeyPair, ParsedPublicKey, ECDSA_P256_SHA256_FIXED,
        ECDSA_P256_SHA256_FIXED_SIGNING,
    };

    fn sha256(message: &[u8]) -> [u8; 32] {
        digest(&SHA256, message).as_ref().try_into().unwrap()
    }

    /// A key on aws-lc-rs alone: its signatures and its verdicts are the ground truth here.
    struct AwsLcKey {
        pair: EcdsaKeyPair,
    }

    impl AwsLcKey {
        fn generate() -> AwsLcKey {
            AwsLcKey {
                pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            }
        }

        fn secret(&self) -> [u8; 32] {
            let be = self.pair.private_key().as_be_bytes().unwrap();
            be.as_ref().try_into().unwrap()
        }

        fn sign(&self, message: &[u8]) -> Vec<u8> {
            let sig = self.pair.sign(&SystemRandom::new(), message).unwrap();
            sig.as_ref().to_vec()
        }

        fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
            let point = self.pair.public_key().as_ref();
            let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).unwrap();
            parsed.verify_sig(message, sig).is_ok()
        }

        fn table(&self) -> KeyTable {
            let point = self.pair.public_key().as_ref();
            table_at(&point[1..33], &point[33..])
        }
    }

    fn table_at(x: &[u8], y: &[u8]) -> KeyTable {
        KeyTable::new(x.try_into().unwrap(), y.try_into().unwrap()).expect("x86-64 Linux")
    }

    #[test]
    fn the_tables_accept_rfc_6979s_p256_sha256_signature_and_nothing_changed() {
        // RFC 6979 A.2.5: the public key, and its deterministic signature of "sample" with
        // SHA-256.
        let x = hex::decode("60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6")
            .unwrap();
        let y = hex::decode("7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299")
            .unwrap();
        let sig = hex::decode(concat!(
            "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
            "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"
        ))
        .unwrap();
        let table = table_at(&x, &y);
        assert!(table.accepts(&sha256(b"sample"), &sig));
        assert!(!table.accepts(&sha256(b"Sample"), &sig));
        for byte in [0, 31, 32, 63] {
            let mut bad = sig.clone();
            bad[byte] ^= 0x40;
            assert!(
                !table.accepts(&sha256(b"sample"), &bad),
                "byte {byte} flipped"
            );
        }
        // Another key's table does not accept it.
        assert!(!AwsLcKey::generate()
            .table()
            .accepts(&sha256(b"sample"), &sig));
    }

    #[test]
    fn the_tables_agree_with_aws_lc_on_random_keys_messages_and_forgeries() {
        for round in 0..64u32 {
            let key = AwsLcKey::generate();
            let table = key.table();
            for len in [0usize, 1, 55, 64, 700] {
                let message: Vec<u8> = (0..len).map(|i| (i as u32 ^ round) as u8).collect();
                let sig = key.sign(&message);
                assert!(
                    table.accepts(&sha256(&message), &sig),
                    "round {round} len {len}"
                );
                let mut forged = sig.clone();
                forged[(round as usize * 7 + len) % 64] ^= 1 << (round % 8);
                assert_eq!(
                    table.accepts(&sha256(&message), &forged),
                    key.verifies(&message, &forged),
                    "round {round} len {len}: a changed signature"
                );
            }
        }
    }

    #[test]
    fn the_tables_signatures_verify_with_aws_lc_alone_and_each_has_its_own_nonce() {
        for round in 0..64u32 {
            let key = AwsLcKey::generate();
            let message = format!("token {round}").into_bytes();
            let sig = sign(&key.secret(), &sha256(&message)).expect("x86-64 Linux");
            let again = sign(&key.secret(), &sha256(&message)).unwrap();
            assert_ne!(sig[..32], again[..32], "a fresh nonce, so a fresh r");
            for s in [&sig, &again] {
                assert!(key.verifies(&message, s), "round {round}");
                assert!(!key.verifies(b"other", s));
            }
        }
        assert_eq!(sign(&[0; 32], &sha256(b"m")), None, "no key is zero");
        assert_eq!(
            sign(&[0xff; 32], &sha256(b"m")),
            None,
            "none above the order"
        );
    }

    #[test]
    fn one_aws_lc_sys_is_in_the_build_the_one_whose_symbols_the_tables_link() {
        let lock = include_str!("../../Cargo.lock");
        let versions: Vec<&str> = lock
            .split("[[package]]")
            .filter(|p| p.contains("\nname = \"aws-lc-sys\"\n"))
            .filter_map(|p| p.lines().find(|l| l.starts_with("version = ")))
            .collect();
        assert_eq!(
            versions,
            ["version = \"0.47.0\""],
            "the link names in nistz256 say aws_lc_0_47_0_: move them with the version"
        );
    }

    #[test]
    fn scalars_outside_one_to_n_are_refused_before_any_arithmetic() {
        let key = AwsLcKey::generate();
        let table = key.table();
        let hash = sha256(b"m");
        let good = key.sign(b"m");
        assert!(table.accepts(&hash, &good));
        let n_be: Vec<u8> = N.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
        for (half, value) in [
            (0, vec![0u8; 32]),
            (1, vec![0u8; 32]),
            (0, n_be.clone()),
            (1, n_be),
        ] {
            let mut bad = good.clone();
            bad[half * 32..half * 32 + 32].copy_from_slice(&value);
            assert!(!table.accepts(&hash, &bad));
        }
        assert!(!table.accepts(&hash, &good[..63]), "a short signature");
    }
}
