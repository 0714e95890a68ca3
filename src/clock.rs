//! The wall clock as the tool records it: seconds since the Unix epoch. A leaf: every room that
//! stamps something (an owner, a results file, a lease) reads the time here.

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
