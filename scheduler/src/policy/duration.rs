//! Human durations: `90s`, `15m`, `2h`, `1h30m`, `500ms`, `1d`.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as a sequence of `<integer><unit>` parts, units `ms`, `s`, `m`, `h`, `d`.
///
/// Bare numbers are refused on purpose: `duration: 300` could mean seconds or minutes, and
/// a chaos tool should not guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 90s, 15m, 2h, 1h30m)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// The longest duration accepted: ten years, far beyond any sensible schedule, small enough
/// that date arithmetic never overflows.
const MAX: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err("each part must start with a whole number"));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| err("number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let part = match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                "d" => Duration::from_secs(n.saturating_mul(86_400)),
                "" => return Err(err("missing unit")),
                _ => return Err(err("unknown unit (use ms, s, m, h or d)")),
            };
            total = total.checked_add(part).ok_or_else(|| err("too large"))?;
        }
        if total > MAX {
            return Err(err("longer than ten years"));
        }
        Ok(HumanDuration(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        let millis = d.subsec_millis();
        let mut secs = d.as_secs();
        let mut out = String::new();
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                out.push_str(&format!("{}{unit}", secs / size));
                secs %= size;
            }
        }
        if millis > 0 {
            out.push_str(&format!("{millis}ms"));
        }
        f.write_str(&out)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as 90s, 15m or 2h")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration such as 90s, 15m, 2h or 1h30m (units ms, s, m, h, d).",
            "examples": ["30s", "15m", "2h"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        s.parse::<HumanDuration>().expect("valid").0
    }

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(d("90s"), Duration::from_secs(90));
        assert_eq!(d("15m"), Duration::from_secs(900));
        assert_eq!(d("2h"), Duration::from_secs(7200));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("1d"), Duration::from_secs(86_400));
        assert_eq!(d("0s"), Duration::ZERO);
    }

    #[test]
    fn refuses_ambiguous_or_broken_input() {
        for bad in [
            "",
            "300",
            "5 m",
            "5min",
            "m5",
            "-5s",
            "1.5h",
            "99999999999999999999s",
            "4000d",
        ] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["90s", "1h30m", "2d3h", "500ms", "0s", "1m1s250ms"] {
            let parsed: HumanDuration = s.parse().expect("valid");
            let again: HumanDuration = parsed.to_string().parse().expect("valid");
            assert_eq!(parsed, again);
        }
        assert_eq!(d("90s").as_secs(), 90);
        assert_eq!(HumanDuration(d("90s")).to_string(), "1m30s");
    }
}
