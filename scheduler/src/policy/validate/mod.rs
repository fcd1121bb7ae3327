//! Semantic checks: turn the wire model into the domain model ([`super::domain`]),
//! resolving every default, and report every problem with the JSON pointer of the field
//! it concerns.
//!
//! - [`policy`](mod@policy): `ChaosPolicy` documents, checked against a [`Context`].
//! - [`config`]: the `HavocConfig` document.

mod budget;
mod config;
mod policy;

use std::str::FromStr;

use chrono::NaiveDateTime;
use chrono_tz::Tz;
use regex::Regex;

pub use self::{
    config::validate_config,
    policy::{policy_warnings, validate_policy},
};
pub use super::domain::Context;
use super::{
    Invalid,
    expr::regex_reason,
    model::SecretRef,
    selector::{LabelSelector, is_bounded_name},
};

/// A problem at a place in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// JSON pointer of the offending field.
    pub pointer: String,
    /// Point at the key rather than the value (for "this field is not allowed here").
    pub at_key: bool,
    pub message: String,
}

impl Issue {
    pub fn value(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            pointer: pointer.into(),
            at_key: false,
            message: message.into(),
        }
    }

    pub fn key(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            pointer: pointer.into(),
            at_key: true,
            message: message.into(),
        }
    }
}

/// A DNS-1123 label: what Kubernetes allows for namespace names.
pub fn is_dns_label(s: &str) -> bool {
    is_bounded_name(s, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
    })
}

/// The wire model's enums, converted into the domain's.
fn domain_all<W: Copy, D: From<W>>(wire: &[W]) -> Vec<D> {
    wire.iter().map(|&w| D::from(w)).collect()
}

fn parse_tz(name: &str) -> Result<Tz, Invalid> {
    Tz::from_str(name).map_err(|_| {
        Invalid(format!(
            "unknown time zone {name:?} (expected an IANA name such as Europe/Berlin)"
        ))
    })
}

fn parse_hhmm(s: &str, allow_24: bool) -> Result<u32, Invalid> {
    let bad = || {
        Invalid(format!(
            "invalid time {s:?}: expected HH:MM (00:00 to 23:59{})",
            if allow_24 { ", or 24:00" } else { "" }
        ))
    };
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if (h < 24 && m < 60) || (allow_24 && h == 24 && m == 0) {
        Ok(h * 60 + m)
    } else {
        Err(bad())
    }
}

fn parse_local(s: &str) -> Result<NaiveDateTime, Invalid> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| {
            Invalid(format!(
                "invalid local time {s:?}: expected YYYY-MM-DDTHH:MM"
            ))
        })
}

fn parse_month_day(s: &str) -> Result<(u32, u32), Invalid> {
    let bad = || Invalid(format!("invalid date {s:?}: expected MM-DD, e.g. 12-24"));
    let (m, d) = s.split_once('-').ok_or_else(bad)?;
    if m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (m, d): (u32, u32) = (m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    // 2000 is a leap year, so 02-29 is accepted (it applies in leap years only).
    chrono::NaiveDate::from_ymd_opt(2000, m, d).ok_or_else(bad)?;
    Ok((m, d))
}

fn compile_regex(pattern: &str) -> Result<Regex, Invalid> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            Invalid(format!(
                "invalid regular expression {pattern:?}: {}",
                regex_reason(&e)
            ))
        })
}

/// Collects issues while validating.
#[derive(Debug, Default)]
struct Checker {
    issues: Vec<Issue>,
}

impl Checker {
    fn value(&mut self, pointer: &str, message: impl Into<String>) {
        self.issues.push(Issue::value(pointer, message));
    }

    fn key(&mut self, pointer: &str, message: impl Into<String>) {
        self.issues.push(Issue::key(pointer, message));
    }

    /// Records the error of `r` at `pointer` and returns its value, if any.
    fn take<T, E: std::fmt::Display>(&mut self, pointer: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.value(pointer, e.to_string())).ok()
    }

    fn selector(&mut self, pointer: &str, s: &Option<String>) -> Option<LabelSelector> {
        let s = s.as_deref()?;
        self.take(pointer, s.parse::<LabelSelector>())
    }

    fn secret(&mut self, p: &str, s: &SecretRef) {
        match (&s.env, &s.file) {
            (Some(e), None) if !e.is_empty() => {}
            (None, Some(f)) if !f.as_os_str().is_empty() => {}
            _ => self.key(p, "a secret reference needs exactly one of `env` or `file`"),
        }
    }

    /// The result: `value` if no issue was found.
    fn finish<T>(self, value: Option<T>) -> Result<T, Vec<Issue>> {
        match value {
            Some(v) if self.issues.is_empty() => Ok(v),
            _ => Err(self.issues),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_dates_and_zones() {
        assert_eq!(parse_hhmm("09:30", false), Ok(570));
        assert!(parse_hhmm("24:00", false).is_err());
        assert_eq!(parse_hhmm("24:00", true), Ok(1440));
        assert!(parse_hhmm("9:30", false).is_err());
        assert_eq!(parse_month_day("02-29"), Ok((2, 29)));
        assert!(parse_month_day("02-30").is_err());
        assert!(parse_local("2026-12-20T00:00").is_ok());
        assert!(parse_tz("Europe/Berlin").is_ok());
        assert!(parse_tz("Mars/Olympus").is_err());
        assert!(compile_regex("(").is_err());
    }
}
