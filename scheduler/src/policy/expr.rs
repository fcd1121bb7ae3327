//! Small expression languages inside policies: Alertmanager label matchers and SLO
//! objectives.

use std::{fmt, str::FromStr};

use regex::Regex;

use super::Invalid;

/// An Alertmanager/Prometheus label matcher: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl LabelMatcher {
    /// Whether a label set (a missing label reads as "") satisfies the matcher.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

impl fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

impl FromStr for LabelMatcher {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let name_len = s
            .char_indices()
            .take_while(|(i, c)| {
                c.is_ascii_alphabetic() || *c == '_' || (*i > 0 && c.is_ascii_digit())
            })
            .count();
        if name_len == 0 {
            return Err(Invalid(format!(
                "invalid matcher {s:?}: expected a label name first"
            )));
        }
        let name = &s[..name_len];
        let rest = s[name_len..].trim_start();
        let (op, rest) = [
            ("=~", MatchOp::Regex),
            ("!~", MatchOp::NotRegex),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ]
        .into_iter()
        .find_map(|(t, op)| rest.strip_prefix(t).map(|r| (op, r.trim())))
        .ok_or_else(|| {
            Invalid(format!(
                "invalid matcher {s:?}: expected one of = != =~ !~ after {name:?}"
            ))
        })?;
        let value = if let Some(inner) = rest.strip_prefix('"') {
            let inner = inner
                .strip_suffix('"')
                .ok_or_else(|| Invalid(format!("invalid matcher {s:?}: unterminated quote")))?;
            inner.replace("\\\"", "\"").replace("\\\\", "\\")
        } else {
            if rest.contains(char::is_whitespace) || rest.contains('"') {
                return Err(Invalid(format!(
                    "invalid matcher {s:?}: quote values that contain spaces"
                )));
            }
            rest.to_string()
        };
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        Invalid(format!(
                            "invalid matcher {s:?}: bad regular expression: {}",
                            regex_reason(&e)
                        ))
                    })?,
            ),
            _ => None,
        };
        Ok(LabelMatcher {
            name: name.to_string(),
            op,
            value,
            regex,
        })
    }
}

/// The one-line reason of a regex error (its Display spans several lines).
pub fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text.lines().next().unwrap_or_default())
        .to_string()
}

/// An SLO objective: a comparison operator and a number, e.g. `< 0.01`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    pub op: CompareOp,
    pub threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Objective {
    /// Whether a measured value meets the objective (NaN never does).
    pub fn holds(&self, value: f64) -> bool {
        if value.is_nan() {
            return false;
        }
        match self.op {
            CompareOp::Lt => value < self.threshold,
            CompareOp::Le => value <= self.threshold,
            CompareOp::Gt => value > self.threshold,
            CompareOp::Ge => value >= self.threshold,
            CompareOp::Eq => value == self.threshold,
            CompareOp::Ne => value != self.threshold,
        }
    }
}

impl FromStr for Objective {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (op, rest) = [
            ("<=", CompareOp::Le),
            (">=", CompareOp::Ge),
            ("==", CompareOp::Eq),
            ("!=", CompareOp::Ne),
            ("<", CompareOp::Lt),
            (">", CompareOp::Gt),
        ]
        .into_iter()
        .find_map(|(tok, op)| t.strip_prefix(tok).map(|r| (op, r.trim())))
        .ok_or_else(|| Invalid(format!("invalid objective {s:?}: expected an operator (< <= > >= == !=) and a number, e.g. \"< 0.01\"")))?;
        let threshold: f64 = rest
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| {
                Invalid(format!(
                    "invalid objective {s:?}: {rest:?} is not a finite number"
                ))
            })?;
        Ok(Objective { op, threshold })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_and_match() {
        let m: LabelMatcher = r#"severity=~"critical|warning""#.parse().expect("valid");
        assert!(m.matches(Some("critical")));
        assert!(!m.matches(Some("info")));
        assert!(!m.matches(Some("critical2")), "regexes are anchored");
        let m: LabelMatcher = r#"namespace="go-demo-8""#.parse().expect("valid");
        assert!(m.matches(Some("go-demo-8")));
        let m: LabelMatcher = "team!=db".parse().expect("valid");
        assert!(m.matches(None));
        let m: LabelMatcher = r#"alertname!~"Watchdog|Info.*""#.parse().expect("valid");
        assert!(!m.matches(Some("InfoInhibitor")));
        for bad in ["=x", "a", "a==\"b\"x", "a=~\"(\"", "a=\"b", "1a=b"] {
            assert!(bad.parse::<LabelMatcher>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn objectives_parse_and_compare() {
        let o: Objective = "< 0.01".parse().expect("valid");
        assert!(o.holds(0.001) && !o.holds(0.01) && !o.holds(f64::NAN));
        let o: Objective = ">=0.99".parse().expect("valid");
        assert!(o.holds(0.99) && !o.holds(0.98));
        assert!("!= 0".parse::<Objective>().expect("valid").holds(1.0));
        for bad in ["0.01", "< abc", "<", "=< 1", "< inf", ""] {
            assert!(bad.parse::<Objective>().is_err(), "{bad:?} accepted");
        }
    }
}
