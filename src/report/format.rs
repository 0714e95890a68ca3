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
