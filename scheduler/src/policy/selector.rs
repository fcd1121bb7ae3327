//! Kubernetes label selectors in their string form (`kubectl -l` syntax).
//!
//! `app=web`, `app==web`, `tier!=db`, `env in (prod, staging)`, `env notin (dev)`,
//! `canary` (key exists), `!canary` (key does not exist), joined by commas (AND).

use std::{collections::BTreeMap, fmt, str::FromStr};

use super::Invalid;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    source: String,
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct SelectorError {
    selector: String,
    reason: String,
}

impl LabelSelector {
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(source: &str) -> Result<Self, Self::Err> {
        let fail = |reason: Invalid| SelectorError {
            selector: source.to_string(),
            reason: reason.0,
        };
        let mut requirements = Vec::new();
        for part in split_top_level(source).map_err(fail)? {
            let part = part.trim();
            if part.is_empty() {
                if source.trim().is_empty() {
                    break;
                }
                return Err(fail(Invalid(
                    "empty requirement (stray comma?)".to_string(),
                )));
            }
            requirements.push(parse_requirement(part).map_err(fail)?);
        }
        Ok(LabelSelector {
            source: source.trim().to_string(),
            requirements,
        })
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Result<Vec<&str>, Invalid> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => {
                if depth > 0 {
                    return Err(Invalid("nested parentheses".to_string()));
                }
                depth += 1;
            }
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| Invalid("unbalanced ')'".to_string()))?;
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(Invalid("unclosed '('".to_string()));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, Invalid> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(Requirement::DoesNotExist(key.to_string()));
    }
    for (op, make) in [
        (
            "!=",
            Requirement::NotEquals as fn(String, String) -> Requirement,
        ),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((k, v)) = part.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            check_key(k)?;
            check_value(v)?;
            return Ok(make(k.to_string(), v.to_string()));
        }
    }
    // set-based: `key in (a, b)` / `key notin (a)`
    if let Some(open) = part.find('(') {
        let head = part[..open].trim();
        let body = part[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| Invalid(format!("expected ')' at the end of {part:?}")))?;
        let mut words = head.split_whitespace();
        let (Some(key), Some(op), None) = (words.next(), words.next(), words.next()) else {
            return Err(Invalid(format!(
                "expected `key in (...)` or `key notin (...)` in {part:?}"
            )));
        };
        check_key(key)?;
        let values: Vec<String> = body.split(',').map(|v| v.trim().to_string()).collect();
        if values.iter().all(String::is_empty) {
            return Err(Invalid(format!("empty value set in {part:?}")));
        }
        for v in &values {
            check_value(v)?;
        }
        return match op {
            "in" => Ok(Requirement::In(key.to_string(), values)),
            "notin" => Ok(Requirement::NotIn(key.to_string(), values)),
            other => Err(Invalid(format!(
                "unknown operator {other:?} (use in or notin)"
            ))),
        };
    }
    if part.split_whitespace().count() > 1 {
        return Err(Invalid(format!(
            "cannot parse {part:?} (operators are =, ==, !=, in, notin, and !key)"
        )));
    }
    check_key(part)?;
    Ok(Requirement::Exists(part.to_string()))
}

/// A label key: optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_`, `.`, beginning and ending alphanumeric.
pub fn check_key(key: &str) -> Result<(), Invalid> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            return Err(Invalid(format!(
                "invalid label key prefix {p:?} (must be a DNS subdomain)"
            )));
        }
    }
    if name.is_empty() {
        return Err(Invalid(format!("empty label key in {key:?}")));
    }
    if !is_label_name(name) {
        return Err(Invalid(format!(
            "invalid label key {key:?} (at most 63 characters: alphanumerics, '-', '_', '.', starting and ending alphanumeric)"
        )));
    }
    Ok(())
}

fn check_value(v: &str) -> Result<(), Invalid> {
    if v.is_empty() || is_label_name(v) {
        Ok(())
    } else {
        Err(Invalid(format!(
            "invalid label value {v:?} (at most 63 characters: alphanumerics, '-', '_', '.', starting and ending alphanumeric)"
        )))
    }
}

fn is_label_name(s: &str) -> bool {
    is_bounded_name(s, |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')
    })
}

/// The shape of Kubernetes names: 1 to 63 bytes, alphanumeric at both ends, and only
/// bytes that `allowed` accepts.
pub(crate) fn is_bounded_name(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| allowed(*c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> LabelSelector {
        s.parse().expect("valid selector")
    }

    #[test]
    fn every_operator_parses_and_matches() {
        let web = labels(&[("app", "web"), ("env", "prod"), ("canary", "")]);
        assert!(sel("app=web").matches(&web));
        assert!(sel("app==web").matches(&web));
        assert!(!sel("app!=web").matches(&web));
        assert!(sel("env in (prod, staging)").matches(&web));
        assert!(!sel("env notin (prod)").matches(&web));
        assert!(sel("canary").matches(&web));
        assert!(!sel("!canary").matches(&web));
        assert!(sel("app=web, env in (prod), !db").matches(&web));
        assert!(sel("").matches(&web));
        assert!(
            sel("tier notin (db)").matches(&web),
            "absent key is not in the set"
        );
        assert!(sel("app.kubernetes.io/name!=x").matches(&web));
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in [
            "app=web,",
            "app in (a, b",
            "app in a, b)",
            "app within (a)",
            "app = we b",
            "-app=web",
            "app=web!",
            "a b",
            "env in ()",
            "Bad_Prefix/x=y",
            "app in ((a))",
            "!",
        ] {
            assert!(bad.parse::<LabelSelector>().is_err(), "{bad:?} accepted");
        }
    }
}
