//! The wall clock, read in one place. What decides by time (commerce's rules, the forwarder's
//! pacing, the rate limiter, grant cool-downs) takes it as a parameter; only the IO layers call
//! this, once per request or event.

/// Unix time in milliseconds (0 before 1970, which no machine of the mesh is at).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_the_year_2024_and_moves_on() {
        let a = super::now_ms();
        assert!(a > 1_704_067_200_000, "{a}");
        assert!(super::now_ms() >= a);
    }
}
