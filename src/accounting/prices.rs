//! The operator's price table: USD per million tokens, per model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::RunUsage;

/// One model's prices in USD per million tokens (`pricing.models.<name>` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: f64,
    #[serde(default)]
    pub cache_write: f64,
}

impl ModelPrice {
    /// The cost of `usage`'s tokens; unknown counts cost nothing.
    pub fn cost(&self, usage: &RunUsage) -> f64 {
        let per = |n: Option<i64>, price: f64| n.unwrap_or(0).max(0) as f64 * price / 1e6;
        per(usage.input_tokens, self.input)
            + per(usage.output_tokens, self.output)
            + per(usage.cache_read_tokens, self.cache_read)
            + per(usage.cache_write_tokens, self.cache_write)
    }

    /// Every price finite and not negative.
    pub fn is_valid(&self) -> bool {
        [self.input, self.output, self.cache_read, self.cache_write]
            .iter()
            .all(|p| p.is_finite() && *p >= 0.0)
    }
}

/// Model name → price. A model matches its exact name, else the longest configured name it
/// starts with (`claude-sonnet-4-5` prices `claude-sonnet-4-5-20250929`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    models: BTreeMap<String, ModelPrice>,
}

impl Prices {
    pub fn from_map(models: impl IntoIterator<Item = (String, ModelPrice)>) -> Self {
        Self {
            models: models.into_iter().collect(),
        }
    }

    pub fn for_model(&self, model: &str) -> Option<&ModelPrice> {
        if let Some(p) = self.models.get(model) {
            return Some(p);
        }
        self.models
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins() {
        let p = |input| ModelPrice {
            input,
            ..ModelPrice::default()
        };
        let prices = Prices::from_map([
            ("claude".to_string(), p(1.0)),
            ("claude-sonnet-4-5".to_string(), p(3.0)),
        ]);
        assert_eq!(
            prices
                .for_model("claude-sonnet-4-5-20250929")
                .unwrap()
                .input,
            3.0
        );
        assert_eq!(prices.for_model("claude-haiku-4-5").unwrap().input, 1.0);
        assert!(prices.for_model("gpt-5").is_none());
        assert!(!p(f64::NAN).is_valid());
        assert!(!p(-1.0).is_valid());
    }
}
