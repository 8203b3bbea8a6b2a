//! Time partitions and retention classes.
//!
//! A partition holds the sealed segments of one retention class for one UTC day of `timestamp`:
//! `segments/{class}/{yyyy-mm-dd}/`. Retention drops whole partitions, so a day's directory is
//! removed with everything in it (segments and the index files built beside them).
//!
//! ```
//! use auditlog_engine::partition::{PartitionKey, RetentionConfig};
//! let config = RetentionConfig::default();
//! assert_eq!(config.class_of("acct_0042"), "standard");
//! let key = PartitionKey::of("standard", 86_400_000_000 + 5);
//! assert_eq!(key.day, 1);
//! assert_eq!(key.relative_dir(), std::path::PathBuf::from("standard/1970-01-02"));
//! ```

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Longest retention a class may have: 100 years (a larger number of days would overflow
/// microsecond arithmetic long before it meant anything).
pub const RETENTION_DAYS_MAX: u32 = 36_500;

/// Identifies a partition: retention class and UTC day (days since 1970-01-01).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionKey {
    pub class: String,
    pub day: i32,
}

impl PartitionKey {
    /// The partition of an event of `class` that happened at `timestamp_us`.
    pub fn of(class: &str, timestamp_us: i64) -> Self {
        Self {
            class: class.to_string(),
            day: day_of(timestamp_us),
        }
    }

    /// `{class}/{yyyy-mm-dd}` below the segments directory.
    pub fn relative_dir(&self) -> PathBuf {
        PathBuf::from(&self.class).join(date_text(self.day))
    }

    /// First microsecond after this partition's day.
    pub fn end_us(&self) -> i64 {
        (i64::from(self.day) + 1) * MICROS_PER_DAY
    }
}

/// UTC day number of a timestamp.
pub fn day_of(timestamp_us: i64) -> i32 {
    i32::try_from(timestamp_us.div_euclid(MICROS_PER_DAY)).unwrap_or(i32::MAX)
}

/// `yyyy-mm-dd` of a day number (proleptic Gregorian, civil-from-days).
pub fn date_text(day: i32) -> String {
    let z = i64::from(day) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Retention classes and which tenants belong to which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionConfig {
    /// Class of tenants not listed in `tenant_classes`.
    pub default_class: String,
    /// Retention in days of each class.
    pub class_days: HashMap<String, u32>,
    /// Tenants mapped to a class other than the default (e.g. enterprise tenants to `extended`).
    pub tenant_classes: HashMap<String, String>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            default_class: "standard".into(),
            class_days: HashMap::from([("standard".into(), 90)]),
            tenant_classes: HashMap::new(),
        }
    }
}

impl RetentionConfig {
    /// The retention class of a tenant.
    pub fn class_of(&self, tenant: &str) -> &str {
        self.tenant_classes
            .get(tenant)
            .map_or(self.default_class.as_str(), String::as_str)
    }

    /// Retention in days of a class (the default class's when the class is unknown).
    pub fn days_of_class(&self, class: &str) -> u32 {
        self.class_days
            .get(class)
            .or_else(|| self.class_days.get(&self.default_class))
            .copied()
            .unwrap_or(90)
    }

    /// Whether `partition` is past its class's retention at `now_us` (UTC µs): its day ended
    /// at least the class's days ago. A class not configured is never expired (a store holding
    /// one does not open).
    ///
    /// ```
    /// use auditlog_engine::partition::{PartitionKey, RetentionConfig, MICROS_PER_DAY};
    /// let config = RetentionConfig::default(); // standard: 90 days
    /// let day_0 = PartitionKey { day: 0, class: "standard".into() };
    /// assert!(!config.is_expired(&day_0, 90 * MICROS_PER_DAY));
    /// assert!(config.is_expired(&day_0, 91 * MICROS_PER_DAY));
    /// ```
    pub fn is_expired(&self, partition: &crate::partition::PartitionKey, now_us: i64) -> bool {
        let Some(&days) = self.class_days.get(&partition.class) else {
            return false;
        };
        let kept_us = i64::from(days).saturating_mul(MICROS_PER_DAY);
        partition.end_us().saturating_add(kept_us) <= now_us
    }

    /// Retention in days of a tenant.
    pub fn days_of_tenant(&self, tenant: &str) -> u32 {
        self.days_of_class(self.class_of(tenant))
    }

    /// The per-tenant retention days that ingest validation checks timestamps against.
    pub fn policy(&self) -> crate::event::RetentionPolicy {
        let mut policy =
            crate::event::RetentionPolicy::new(self.days_of_class(&self.default_class));
        for (tenant, class) in &self.tenant_classes {
            policy = policy.with_tenant(tenant.clone(), self.days_of_class(class));
        }
        policy
    }

    /// Checks that every class named exists and the class names are path-safe.
    pub fn validate(&self) -> Result<(), String> {
        let safe = |name: &str| {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        if !self.class_days.contains_key(&self.default_class) {
            return Err(format!(
                "default retention class {:?} has no retention days",
                self.default_class
            ));
        }
        for (class, days) in &self.class_days {
            if !safe(class) {
                return Err(format!(
                    "retention class name {class:?} must be 1..64 bytes of [a-z0-9_-]"
                ));
            }
            if *days == 0 {
                return Err(format!("retention class {class:?} has 0 retention days"));
            }
            if *days > RETENTION_DAYS_MAX {
                return Err(format!(
                    "retention class {class:?} keeps {days} days, more than the {RETENTION_DAYS_MAX} (100 years) allowed"
                ));
            }
        }
        for (tenant, class) in &self.tenant_classes {
            if !self.class_days.contains_key(class) {
                return Err(format!(
                    "tenant {tenant:?} is mapped to unknown retention class {class:?}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_date_text_matches_known_days() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(-1), "1969-12-31");
        // 2026-11-27 is day 20_784.
        assert_eq!(date_text(20_784), "2026-11-27");
        assert_eq!(date_text(11_016), "2000-02-29");
    }

    #[test]
    fn partition_day_of_negative_timestamp_floors() {
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(MICROS_PER_DAY - 1), 0);
    }

    #[test]
    fn retention_validate_names_unknown_class() {
        let mut config = RetentionConfig::default();
        config
            .tenant_classes
            .insert("acct_1".into(), "extended".into());
        let error = config.validate().unwrap_err();
        assert!(
            error.contains("unknown retention class \"extended\""),
            "{error}"
        );
    }
}
