//! How PostgreSQL rows read each kind of value (the records themselves: `store::records`).
//! Every value has its own type; `raw` is selected as text.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use crate::store::records::{Columns, CTX};
use crate::store::{Result, StoreError};

pub(super) use crate::store::records::{agent_run, connection_state, incident, occurrence, status};
pub(super) use crate::store::sql::INCIDENT_COLUMNS;

/// Every kind of value decodes the same way: the column's type maps to the Rust type.
macro_rules! typed_columns {
    ($($method:ident: $ty:ty),* $(,)?) => {
        impl Columns for PgRow {
            $(
                fn $method(&self, col: &str) -> Result<$ty> {
                    self.try_get(col).map_err(StoreError::db(CTX))
                }
            )*
        }
    };
}

typed_columns! {
    text: String,
    opt_text: Option<String>,
    int: i32,
    opt_int: Option<i32>,
    big: i64,
    opt_big: Option<i64>,
    opt_real: Option<f64>,
    opt_bool: Option<bool>,
    id: Uuid,
    time: DateTime<Utc>,
    opt_time: Option<DateTime<Utc>>,
}
