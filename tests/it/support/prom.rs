//! A small checker of the Prometheus text exposition format (version 0.0.4): every sample line
//! is `name{labels} value [timestamp]`, every sample belongs to a family declared by `# TYPE`
//! before it, and histogram buckets are cumulative and end in `+Inf` equal to `_count`.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → counter, gauge, histogram, summary or untyped.
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

const TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut exp = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let at = |msg: String| format!("line {}: {msg}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type".into()))?;
            check_name(name).map_err(at)?;
            if !TYPES.contains(&ty) {
                return Err(at(format!("unknown type {ty:?}")));
            }
            if exp
                .samples
                .iter()
                .any(|s| family(&exp, &s.name) == Some(name))
            {
                return Err(at("TYPE after samples of its family".into()));
            }
            if exp.types.insert(name.to_string(), ty.to_string()).is_some() {
                return Err(at("second TYPE line for the family".into()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            check_name(name).map_err(at)?;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        if family(&exp, &sample.name).is_none() {
            return Err(at(format!("sample {:?} has no # TYPE", sample.name)));
        }
        exp.samples.push(sample);
    }
    check_histograms(&exp)?;
    Ok(exp)
}

/// The declared family a sample belongs to (histograms and summaries add suffixes).
fn family<'a>(exp: &'a Exposition, name: &str) -> Option<&'a str> {
    if let Some((k, _)) = exp.types.get_key_value(name) {
        return Some(k.as_str());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some((k, ty)) = exp.types.get_key_value(base) {
                if ty == "histogram" || (ty == "summary" && suffix != "_bucket") {
                    return Some(k.as_str());
                }
            }
        }
    }
    None
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("invalid metric name {name:?}"))
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| "sample without a value".to_string())?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or_else(|| "no space before the value".to_string())?
        .split(' ');
    let value = parse_value(fields.next().unwrap_or(""))?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("invalid timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `k="v",...}` and returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').ok_or("label without =")?;
        let key = &s[..eq];
        check_name(key).map_err(|_| format!("invalid label name {key:?}"))?;
        let mut chars = s[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {key} value is not quoted"));
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, 'n') => value.push('\n'),
                (true, c) => value.push(c),
                (false, '\\') => {
                    escaped = true;
                    continue;
                }
                (false, '"') => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                (false, c) => value.push(c),
            }
            escaped = false;
        }
        let end = end.ok_or_else(|| format!("label {key} value is not terminated"))?;
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key} repeated"));
        }
        s = &s[end..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|_| format!("invalid value {v:?}")),
    }
}

/// Buckets of each histogram series are cumulative and the `+Inf` one equals `_count`.
fn check_histograms(exp: &Exposition) -> Result<(), String> {
    for (name, ty) in &exp.types {
        if ty != "histogram" {
            continue;
        }
        let bucket = format!("{name}_bucket");
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for s in exp.samples.iter().filter(|s| s.name == bucket) {
            let mut labels = s.labels.clone();
            let le = labels
                .remove("le")
                .ok_or_else(|| format!("{bucket} sample without le"))?;
            series
                .entry(labels)
                .or_default()
                .push((parse_value(&le)?, s.value));
        }
        for (labels, buckets) in series {
            let mut prev = (f64::NEG_INFINITY, 0.0);
            for &(le, count) in &buckets {
                if le <= prev.0 || count < prev.1 {
                    return Err(format!("{bucket}{labels:?}: buckets not cumulative"));
                }
                prev = (le, count);
            }
            if prev.0 != f64::INFINITY {
                return Err(format!("{bucket}{labels:?}: no +Inf bucket"));
            }
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let count = exp.value(&format!("{name}_count"), &pairs);
            if count != Some(prev.1) {
                return Err(format!(
                    "{name}{labels:?}: +Inf bucket {} but _count {count:?}",
                    prev.1
                ));
            }
        }
    }
    Ok(())
}
