//! Keyset pagination of incidents for the dashboard's list: filters, two orders, and cursors
//! that stay as cheap on page 2,000 as on page 1 (no OFFSET: each page starts from an id).
//!
//! Ids are UUID v7, so id order is creation order; migration 0010 gives every filter column an
//! index ending in id. This module owns the paging rules; the SQL is in the backends' `page.rs`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Result, Store, StoreError};
use crate::incident::{Incident, IncidentStatus};

/// Largest page of [`Store::incident_page`].
pub const MAX_PAGE_SIZE: u32 = 500;
/// Longest filter value accepted (a cluster name, a severity, a fault type).
pub const MAX_FILTER_BYTES: usize = 256;

/// Newest first (the default) or oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageOrder {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// Where a page starts: after the last id of the previous page, or before the first id of the
/// next one (going back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    After(Uuid),
    Before(Uuid),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageQuery {
    pub status: Option<IncidentStatus>,
    pub cluster: Option<String>,
    pub severity: Option<String>,
    pub fault_type: Option<String>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    pub order: PageOrder,
    pub cursor: Option<Cursor>,
    /// Rows per page, 1..=[`MAX_PAGE_SIZE`].
    pub size: u32,
}

/// One page in the query's order, with the cursors of its neighbours (`None` at either end).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub incidents: Vec<Incident>,
    pub next: Option<Cursor>,
    pub prev: Option<Cursor>,
}

/// What the backends run: `descending` is the SQL order, `start` the exclusive bound in it.
pub(crate) struct Scan<'a> {
    pub query: &'a PageQuery,
    pub descending: bool,
    pub start: Option<Uuid>,
    pub limit: i64,
}

impl Store {
    /// One page of incidents. A page holds `size` rows at most; `next`/`prev` are set when more
    /// rows lie in that direction (`prev` after a forward step is set without a look-up: the
    /// caller came from there).
    pub async fn incident_page(&self, q: &PageQuery) -> Result<Page> {
        if q.size == 0 || q.size > MAX_PAGE_SIZE {
            return Err(StoreError::InvalidInput(format!(
                "page size {} is outside 1..={MAX_PAGE_SIZE}",
                q.size
            )));
        }
        for (name, value) in [
            ("cluster", &q.cluster),
            ("severity", &q.severity),
            ("fault type", &q.fault_type),
        ] {
            if let Some(v) = value {
                if v.is_empty() || v.len() > MAX_FILTER_BYTES || v.contains('\0') {
                    return Err(StoreError::InvalidInput(format!(
                        "{name} filter must have 1 to {MAX_FILTER_BYTES} bytes and no NUL"
                    )));
                }
            }
        }
        let newest_first = q.order == PageOrder::NewestFirst;
        // Going back runs the scan in the opposite order and turns the rows around.
        let (backwards, start) = match q.cursor {
            None => (false, None),
            Some(Cursor::After(id)) => (false, Some(id)),
            Some(Cursor::Before(id)) => (true, Some(id)),
        };
        let scan = Scan {
            query: q,
            descending: newest_first != backwards,
            start,
            limit: i64::from(q.size) + 1,
        };
        let mut rows = on_driver!(self.incident_page(&scan))?;
        let more = rows.len() > q.size as usize;
        rows.truncate(q.size as usize);
        if backwards {
            rows.reverse();
        }
        let first = rows.first().map(|i| i.id);
        let last = rows.last().map(|i| i.id);
        let (next, prev) = if backwards {
            (
                last.map(Cursor::After).or(start.map(Cursor::After)),
                first.filter(|_| more).map(Cursor::Before),
            )
        } else {
            (
                last.filter(|_| more).map(Cursor::After),
                start.and(first.map(Cursor::Before)),
            )
        };
        Ok(Page {
            incidents: rows,
            next,
            prev,
        })
    }
}
