//! Incident ids as users type them: a full UUID, a unique prefix of its text form, or its short
//! id ([`crate::incident::short_id`], the last 10 hex digits).

use uuid::Uuid;

use super::{Result, StoreError};
use crate::incident::SHORT_ID_LEN;

pub(crate) const MIN_PREFIX: usize = 8;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IdQuery {
    Full(Uuid),
    /// Lower-case hex digits and dashes only, so it is safe inside a LIKE pattern.
    Prefix(String),
    /// Exactly [`SHORT_ID_LEN`] lower-case hex digits: the tail of the text form. A prefix of
    /// more than 8 characters always holds a dash (the 9th character), so the two cannot be
    /// confused.
    Short(String),
}

pub(crate) fn parse(input: &str) -> Result<IdQuery> {
    let input = input.trim();
    if let Ok(id) = Uuid::try_parse(input) {
        return Ok(IdQuery::Full(id));
    }
    if input.len() == SHORT_ID_LEN && input.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(IdQuery::Short(input.to_ascii_lowercase()));
    }
    if input.chars().count() < MIN_PREFIX {
        return Err(StoreError::InvalidInput(format!(
            "incident id prefix must have at least {MIN_PREFIX} characters (got {input:?})"
        )));
    }
    if input.len() > 36 || !input.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(StoreError::InvalidInput(format!(
            "{input:?} is not an incident id or id prefix: expected hex digits and dashes"
        )));
    }
    Ok(IdQuery::Prefix(input.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ids_prefixes_and_bad_input() {
        let id = Uuid::now_v7();
        assert_eq!(parse(&id.to_string()).unwrap(), IdQuery::Full(id));
        assert_eq!(
            parse(" 0191ABCD-12 ").unwrap(),
            IdQuery::Prefix("0191abcd-12".into())
        );
        let short = parse("0191abc").unwrap_err().to_string();
        assert!(short.contains("at least 8 characters"), "{short}");
        let wild = parse("0191abcd%").unwrap_err().to_string();
        assert!(wild.contains("hex digits"), "{wild}");
        assert!(parse("0191abcd_").is_err());
        assert_eq!(
            parse(" 4D5E6A7B8C ").unwrap(),
            IdQuery::Short("4d5e6a7b8c".into())
        );
        assert_eq!(
            parse(&crate::incident::short_id(id)).unwrap(),
            IdQuery::Short(crate::incident::short_id(id))
        );
    }
}
