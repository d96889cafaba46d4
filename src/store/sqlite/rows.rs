//! How SQLite rows read each kind of value (the records themselves: `store::records`). Ids are
//! stored as text, times as unix microseconds.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use crate::store::records::{Columns, CTX};
use crate::store::{time, Result, StoreError};

pub(super) use crate::store::records::{agent_run, connection_state, incident, occurrence, status};
pub(super) use crate::store::sql::INCIDENT_COLUMNS;

fn get<'r, T>(row: &'r SqliteRow, col: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(col).map_err(StoreError::db(CTX))
}

impl Columns for SqliteRow {
    fn text(&self, col: &str) -> Result<String> {
        get(self, col)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        get(self, col)
    }
    fn int(&self, col: &str) -> Result<i32> {
        get(self, col)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i32>> {
        get(self, col)
    }
    fn big(&self, col: &str) -> Result<i64> {
        get(self, col)
    }
    fn opt_big(&self, col: &str) -> Result<Option<i64>> {
        get(self, col)
    }
    fn opt_real(&self, col: &str) -> Result<Option<f64>> {
        get(self, col)
    }
    fn opt_bool(&self, col: &str) -> Result<Option<bool>> {
        get(self, col)
    }
    fn id(&self, col: &str) -> Result<Uuid> {
        let text: String = get(self, col)?;
        Uuid::try_parse(&text)
            .map_err(|e| StoreError::decode(CTX, format!("{col} {text:?} is not a UUID: {e}")))
    }
    fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        time::from_micros(get(self, col)?)
    }
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        get::<Option<i64>>(self, col)?
            .map(time::from_micros)
            .transpose()
    }
}
