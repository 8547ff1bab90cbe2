//! A component's setting and the parsers of their values. A leaf: every component
//! declares its settings with these, and only the composer (`config`) knows them all.

/// One setting of one component: its name (flag `--name-with-dashes`, TOML key `name`),
/// its environment variable, the default shown in help, and how to apply a value.
pub struct Setting<C> {
    pub name: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub help: &'static str,
    pub set: fn(&mut C, &str) -> Result<(), String>,
}

// Parsers shared by every component's settings, each with a message naming the expected form.

pub fn parse_u64(v: &str) -> Result<u64, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("expected a whole number, got {v:?}"))
}

pub fn parse_port(v: &str) -> Result<u16, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("expected a port number 0-65535, got {v:?}"))
}

pub fn parse_duration(v: &str) -> Result<std::time::Duration, String> {
    crate::util::duration::parse(v)
        .map_err(|e| format!("expected a duration like 500ms, 15s, 5m, 1h or 2d: {e}"))
}

pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected on/off (true/false, 1/0), got {v:?}")),
    }
}

pub fn parse_percent(v: &str) -> Result<f64, String> {
    match v.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("expected a percentage 0-100, got {v:?}")),
    }
}

/// Bytes as a whole number, or with a unit: `10MiB`, `512KiB`, `1GB`.
pub fn parse_bytes(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a size in bytes (or with KiB, MiB, GiB), got {v:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "expected a size in bytes (or with KiB, MiB, GiB), got {v:?}"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {v:?} is too large"))
}

pub fn parse_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_percent() {
        assert_eq!(parse_bytes("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_bytes("1234").unwrap(), 1234);
        assert!(parse_bytes("ten").is_err());
        assert!(parse_percent("101").is_err());
        assert_eq!(parse_percent("80").unwrap(), 80.0);
    }
}
