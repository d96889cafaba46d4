//! The store's clock: microsecond precision everywhere, so both backends compare the same values.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Result, StoreError};

/// Now, truncated to microseconds (PostgreSQL's precision, SQLite's INTEGER unit).
pub(crate) fn now() -> DateTime<Utc> {
    truncate(Utc::now())
}

pub(crate) fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// SQLite's representation: unix microseconds.
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| {
        StoreError::decode(
            "reading a timestamp",
            format!("timestamp {micros} µs is out of range"),
        )
    })
}

pub(crate) fn duration(d: Duration, what: &str) -> Result<chrono::Duration> {
    chrono::Duration::from_std(d)
        .ok()
        .filter(|d| *d < chrono::Duration::days(365 * 100))
        .ok_or_else(|| StoreError::InvalidInput(format!("{what} duration {d:?} is too large")))
}
