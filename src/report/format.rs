//! How numbers read in the report's tables and in `compare`: one place for both.

/// Milliseconds as tables show them: microseconds kept below 1 ms.
pub fn fmt_ms(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 1.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// A relative change as text.
pub fn pct(base: f64, new: f64) -> String {
    if base == 0.0 {
        return if new == 0.0 {
            "±0%".into()
        } else {
            "new".into()
        };
    }
    format!("{:+.1}%", 100.0 * (new - base) / base)
}

/// A signed figure with at least two significant digits (`+6.2`, `-0.043`, `+0.0012`), so a
/// small slope and its interval never read `+0.0`.
pub fn signed(v: f64) -> String {
    let digits = if v == 0.0 || !v.is_finite() {
        1
    } else {
        (1 - v.abs().log10().floor() as i32).clamp(1, 6) as usize
    };
    format!("{v:+.digits$}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn signed_figures_keep_two_significant_digits() {
        assert_eq!(super::signed(6.234), "+6.2");
        assert_eq!(super::signed(-13.31), "-13.3");
        assert_eq!(super::signed(-0.0432), "-0.043");
        assert_eq!(super::signed(0.00123), "+0.0012");
        assert_eq!(super::signed(0.0), "+0.0");
    }
}
