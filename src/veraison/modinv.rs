//! The inverse modulo P-256's group order n, in variable time: Bernstein and Yang's safegcd
//! ("Fast constant-time gcd computation and modular inversion", 2019) with the variable-time
//! steps and the signed 62-bit limbs of libsecp256k1's `modinv64` (Wuille's write-up,
//! `doc/safegcd_implementation.md`), written here for this one modulus. Each round applies 62
//! division steps to the low limbs as a 2×2 matrix, then to the whole numbers; about 1 µs, a
//! quarter of the binary extended Euclid aws-lc offers for it. Used where the input is public
//! or, in signing, a nonce for the project's synthetic keys only (see `p256_table::sign`).

/// A number as five signed limbs of 62 bits (the top one wider), little-endian.
type Signed62 = [i64; 5];

/// The low 62 bits.
const M62: u64 = u64::MAX >> 2;
/// n in signed 62-bit limbs.
const N62: Signed62 = [
    0x33b9_cac2_fc63_2551,
    0x339b_eab6_9c5e_7a13,
    0x3fff_ffff_ffff_fffb,
    0x3fff_ffc0_0000_003f,
    0xff,
];
/// n⁻¹ mod 2^62.
const N_INV62: u64 = 0x332e_3755_11ff_43b1;

/// The transition matrix of 62 division steps, scaled by 2^62.
struct Matrix {
    u: i64,
    v: i64,
    q: i64,
    r: i64,
}

/// `a⁻¹ mod n` for `0 < a < n` (four little-endian 64-bit limbs); 0 for 0.
pub fn inverse_mod_n(a: &[u64; 4]) -> [u64; 4] {
    let mut d: Signed62 = [0; 5];
    let mut e: Signed62 = [1, 0, 0, 0, 0];
    let mut f = N62;
    let mut g = to_signed62(a);
    let mut len = 5;
    let mut eta: i64 = -1;
    loop {
        let (next_eta, t) = divsteps_62(eta, f[0] as u64, g[0] as u64);
        eta = next_eta;
        update_de(&mut d, &mut e, &t);
        update_fg(len, &mut f, &mut g, &t);
        if g[..len].iter().all(|&limb| limb == 0) {
            break;
        }
        // Shorten f and g when both top limbs are 0 or −1 (and more than one limb is left).
        let (fn_, gn) = (f[len - 1], g[len - 1]);
        if len > 1 && (fn_ ^ (fn_ >> 63)) == 0 && (gn ^ (gn >> 63)) == 0 {
            f[len - 2] |= ((fn_ as u64) << 62) as i64;
            g[len - 2] |= ((gn as u64) << 62) as i64;
            len -= 1;
        }
    }
    // f is ±1 (the gcd of n and a): d·a ≡ f, so the inverse is d's value times f's sign.
    normalize(&mut d, f[len - 1]);
    from_signed62(&d)
}

/// Up to 62 division steps on the low bits of f (odd) and g, variable time: the new eta and
/// the matrix that applies them.
fn divsteps_62(mut eta: i64, f0: u64, g0: u64) -> (i64, Matrix) {
    let (mut u, mut v, mut q, mut r) = (1u64, 0u64, 0u64, 1u64);
    let (mut f, mut g) = (f0, g0);
    let mut i: u32 = 62;
    loop {
        // Strip g's trailing zeros (at most the steps left).
        let zeros = (g | (u64::MAX << i)).trailing_zeros();
        g >>= zeros;
        u <<= zeros;
        v <<= zeros;
        eta -= i64::from(zeros);
        i -= zeros;
        if i == 0 {
            break;
        }
        // f and g are odd; when eta < 0, swap them (g := −f) and the matrix's rows.
        let w: u64;
        if eta < 0 {
            eta = -eta;
            (f, g) = (g, f.wrapping_neg());
            (u, q) = (q, u.wrapping_neg());
            (v, r) = (r, v.wrapping_neg());
            // As many bits as both the steps left and eta + 1 allow, up to 6, cancelled at once.
            let limit = (eta as u32 + 1).min(i);
            let m = (u64::MAX >> (64 - limit)) & 63;
            w = f
                .wrapping_mul(g)
                .wrapping_mul(f.wrapping_mul(f).wrapping_sub(2))
                & m;
        } else {
            let limit = (eta as u32 + 1).min(i);
            let m = (u64::MAX >> (64 - limit)) & 15;
            let w0 = f.wrapping_add(((f.wrapping_add(1)) & 4) << 1);
            w = w0.wrapping_neg().wrapping_mul(g) & m;
        }
        g = g.wrapping_add(f.wrapping_mul(w));
        q = q.wrapping_add(u.wrapping_mul(w));
        r = r.wrapping_add(v.wrapping_mul(w));
    }
    (
        eta,
        Matrix {
            u: u as i64,
            v: v as i64,
            q: q as i64,
            r: r as i64,
        },
    )
}

/// `[d, e] := t·[d, e] / 2^62 mod n`, keeping both in (−2n, n).
fn update_de(d: &mut Signed62, e: &mut Signed62, t: &Matrix) {
    let (u, v, q, r) = (t.u, t.v, t.q, t.r);
    let (d0, e0) = (d[0], e[0]);
    // Add n·[md, me] so that the low 62 bits cancel; start from the signs' correction.
    let sd = d[4] >> 63;
    let se = e[4] >> 63;
    let mut md = (u & sd) + (v & se);
    let mut me = (q & sd) + (r & se);
    let mut cd = i128::from(u) * i128::from(d0) + i128::from(v) * i128::from(e0);
    let mut ce = i128::from(q) * i128::from(d0) + i128::from(r) * i128::from(e0);
    md -= (N_INV62.wrapping_mul(cd as u64).wrapping_add(md as u64) & M62) as i64;
    me -= (N_INV62.wrapping_mul(ce as u64).wrapping_add(me as u64) & M62) as i64;
    cd += i128::from(N62[0]) * i128::from(md);
    ce += i128::from(N62[0]) * i128::from(me);
    debug_assert_eq!(cd as u64 & M62, 0);
    debug_assert_eq!(ce as u64 & M62, 0);
    cd >>= 62;
    ce >>= 62;
    for i in 1..5 {
        cd += i128::from(u) * i128::from(d[i])
            + i128::from(v) * i128::from(e[i])
            + i128::from(N62[i]) * i128::from(md);
        ce += i128::from(q) * i128::from(d[i])
            + i128::from(r) * i128::from(e[i])
            + i128::from(N62[i]) * i128::from(me);
        d[i - 1] = (cd as u64 & M62) as i64;
        e[i - 1] = (ce as u64 & M62) as i64;
        cd >>= 62;
        ce >>= 62;
    }
    d[4] = cd as i64;
    e[4] = ce as i64;
}

/// `[f, g] := t·[f, g] / 2^62` over their first `len` limbs.
fn update_fg(len: usize, f: &mut Signed62, g: &mut Signed62, t: &Matrix) {
    let (u, v, q, r) = (t.u, t.v, t.q, t.r);
    let mut cf = i128::from(u) * i128::from(f[0]) + i128::from(v) * i128::from(g[0]);
    let mut cg = i128::from(q) * i128::from(f[0]) + i128::from(r) * i128::from(g[0]);
    debug_assert_eq!(cf as u64 & M62, 0);
    debug_assert_eq!(cg as u64 & M62, 0);
    cf >>= 62;
    cg >>= 62;
    for i in 1..len {
        cf += i128::from(u) * i128::from(f[i]) + i128::from(v) * i128::from(g[i]);
        cg += i128::from(q) * i128::from(f[i]) + i128::from(r) * i128::from(g[i]);
        f[i - 1] = (cf as u64 & M62) as i64;
        g[i - 1] = (cg as u64 & M62) as i64;
        cf >>= 62;
        cg >>= 62;
    }
    f[len - 1] = cf as i64;
    g[len - 1] = cg as i64;
}

/// `r := r·sign mod n` into [0, n), for r in (−2n, n) and a sign of ±1.
fn normalize(r: &mut Signed62, sign: i64) {
    let add_n = |r: &mut Signed62| {
        let cond = r[4] >> 63;
        for (limb, n) in r.iter_mut().zip(N62) {
            *limb += n & cond;
        }
    };
    let carry = |r: &mut Signed62| {
        for i in 0..4 {
            r[i + 1] += r[i] >> 62;
            r[i] &= M62 as i64;
        }
    };
    add_n(r);
    let negate = sign >> 63;
    for limb in r.iter_mut() {
        *limb = (*limb ^ negate) - negate;
    }
    carry(r);
    add_n(r);
    carry(r);
}

fn to_signed62(a: &[u64; 4]) -> Signed62 {
    [
        (a[0] & M62) as i64,
        ((a[0] >> 62 | a[1] << 2) & M62) as i64,
        ((a[1] >> 60 | a[2] << 4) & M62) as i64,
        ((a[2] >> 58 | a[3] << 6) & M62) as i64,
        (a[3] >> 56) as i64,
    ]
}

fn from_signed62(r: &Signed62) -> [u64; 4] {
    let r = r.map(|limb| limb as u64);
    [
        r[0] | r[1] << 62,
        r[1] >> 2 | r[2] << 60,
        r[2] >> 4 | r[3] << 58,
        r[3] >> 6 | r[4] << 56,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// n as four 64-bit limbs.
    const N: [u64; 4] = [
        0xf3b9_cac2_fc63_2551,
        0xbce6_faad_a717_9e84,
        0xffff_ffff_ffff_ffff,
        0xffff_ffff_0000_0000,
    ];

    /// `a·b mod n` by schoolbook multiplication and long division on u128 (slow, obvious).
    fn mul_mod_n(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
        // The 512-bit product.
        let mut p = [0u64; 8];
        for i in 0..4 {
            let mut carry = 0u128;
            for j in 0..4 {
                let t = u128::from(a[i]) * u128::from(b[j]) + u128::from(p[i + j]) + carry;
                p[i + j] = t as u64;
                carry = t >> 64;
            }
            p[i + 4] = carry as u64;
        }
        // Bit by bit: rem = rem·2 + bit, minus n when it reaches n (rem < n < 2^256 always).
        let mut rem = [0u64; 4];
        for bit in (0..512).rev() {
            let top = rem[3] >> 63;
            for k in (1..4).rev() {
                rem[k] = rem[k] << 1 | rem[k - 1] >> 63;
            }
            rem[0] = rem[0] << 1 | (p[bit / 64] >> (bit % 64) & 1);
            let ge = top == 1 || rem.iter().rev().cmp(N.iter().rev()).is_ge();
            if ge {
                let mut borrow = 0u64;
                for k in 0..4 {
                    let (d, b1) = rem[k].overflowing_sub(N[k]);
                    let (d, b2) = d.overflowing_sub(borrow);
                    rem[k] = d;
                    borrow = u64::from(b1 || b2);
                }
            }
        }
        rem
    }

    #[test]
    fn the_inverse_times_the_number_is_one_modulo_n() {
        let mut cases: Vec<[u64; 4]> = vec![
            [1, 0, 0, 0],
            [2, 0, 0, 0],
            [N[0] - 1, N[1], N[2], N[3]],
            [0, 0, 0, 1 << 63],
            [u64::MAX, u64::MAX, u64::MAX, 0],
        ];
        for _ in 0..2_000 {
            let mut a: [u64; 4] = rand::random();
            a[3] >>= 1; // below n
            if a != [0; 4] {
                cases.push(a);
            }
        }
        for a in cases {
            let inv = inverse_mod_n(&a);
            assert!(
                inv.iter().rev().cmp(N.iter().rev()).is_lt(),
                "{a:x?}: reduced"
            );
            assert_eq!(mul_mod_n(&a, &inv), [1, 0, 0, 0], "{a:x?}");
        }
        assert_eq!(inverse_mod_n(&[0; 4]), [0; 4]);
    }
}
