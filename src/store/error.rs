use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// One fault of a [`crate::store::Store::record_faults`] batch is unusable. Nothing of the
    /// batch was written: drop the fault at `index` and record the rest again.
    #[error("invalid fault at index {index} of the batch: {reason}")]
    InvalidFault { index: usize, reason: String },
    #[error("incident {0} not found")]
    NotFound(String),
    #[error("incident id {prefix:?} is ambiguous: it matches {matches} incidents; give more of the full id")]
    Ambiguous { prefix: String, matches: usize },
    #[error("{0}")]
    Conflict(String),
    #[error("database error while {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database is the Go nightcrier's (same default path, an `incidents` table of its own).
    #[error("this database holds the Go nightcrier's tables (fault_events, incidents, agent_executions), not nightcrier's: nothing was changed. Point database.url at another file or database, and bring the Go incidents over with `nightcrier migrate --import-go <the Go file>`")]
    GoSchema,
    /// Found at start: nightcrier must write (faults, leases), so it refuses to run.
    #[error("the database is read-only ({0}); nightcrier needs to write to it")]
    ReadOnly(String),
}

/// SQLite primary result codes (the low byte of an extended code) that mean "try again later".
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_CANTOPEN: i64 = 14;

impl StoreError {
    /// True when the database could not be reached or is busy: worth retrying later, nothing was
    /// written.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database { source, .. } => sqlx_unavailable(source),
            StoreError::Migrate(
                sqlx::migrate::MigrateError::Execute(source)
                | sqlx::migrate::MigrateError::ExecuteMigration(source, _),
            ) => sqlx_unavailable(source),
            _ => false,
        }
    }

    /// True when the database says its file or pages are damaged (SQLite `SQLITE_CORRUPT`,
    /// `SQLITE_NOTADB`; PostgreSQL `XX001`, `XX002`): retrying cannot help, and writes must stop.
    pub fn is_corrupt(&self) -> bool {
        match self {
            StoreError::Database { source, .. } => source
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|code| corrupt_code(&code)),
            _ => false,
        }
    }

    /// True when the database refused a write because it is read-only (SQLite
    /// `SQLITE_READONLY`, PostgreSQL `25006`).
    pub fn is_read_only(&self) -> bool {
        match self {
            StoreError::ReadOnly(_) => true,
            StoreError::Database { source, .. } => source
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|code| {
                    code == "25006"
                        || (code.len() < 5 && code.parse::<i64>().is_ok_and(|n| n & 0xff == 8))
                }),
            _ => false,
        }
    }

    /// True when the database refused the data itself (validation, a constraint, a value it
    /// cannot store: SQLite's constraint errors, PostgreSQL's integrity-constraint classes and
    /// class 22, data exception, such as a NUL byte in text or a value out of range), as opposed
    /// to being unreachable, busy or broken. Only then may a caller drop what it tried to
    /// write: trying again cannot succeed.
    pub fn is_refused_data(&self) -> bool {
        match self {
            StoreError::InvalidInput(_) | StoreError::InvalidFault { .. } => true,
            StoreError::Database { source, .. } => source.as_database_error().is_some_and(|db| {
                // sqlx sorts constraint violations (unique, foreign key, not null, check) of
                // both backends into kinds other than `Other`.
                db.kind() != sqlx::error::ErrorKind::Other
                    || db
                        .code()
                        .is_some_and(|c| c.len() == 5 && c.starts_with("22"))
            }),
            _ => false,
        }
    }

    pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Database { context, source }
    }

    /// A row that this version cannot read (e.g. an unknown status written by a newer version).
    pub(crate) fn decode(context: &'static str, msg: String) -> StoreError {
        StoreError::Database {
            context,
            source: sqlx::Error::Decode(msg.into()),
        }
    }
}

fn sqlx_unavailable(source: &sqlx::Error) -> bool {
    match source {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| unavailable_code(&code)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs are exactly five characters; SQLite (extended) result codes are integers
/// of at most four digits.
fn unavailable_code(code: &str) -> bool {
    if code.len() == 5 {
        // 08: connection exception; 57P01..57P03: admin/crash shutdown, cannot connect now;
        // 53300: too many connections. (40P01/40001 are retried inside the store.)
        return code.starts_with("08") || code.starts_with("57P") || code == "53300";
    }
    code.parse::<i64>().is_ok_and(|n| {
        let primary = n & 0xff;
        primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_CANTOPEN
    })
}

/// See [`StoreError::is_corrupt`]; codes as in [`unavailable_code`].
fn corrupt_code(code: &str) -> bool {
    if code.len() == 5 {
        return code == "XX001" || code == "XX002";
    }
    code.parse::<i64>()
        .is_ok_and(|n| matches!(n & 0xff, SQLITE_CORRUPT | SQLITE_NOTADB))
}

const SQLITE_CORRUPT: i64 = 11;
const SQLITE_NOTADB: i64 = 26;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes_of_both_backends() {
        for code in [
            "5", "6", "517", "261", "262", "14", "08006", "08001", "57P01", "57P03", "53300",
        ] {
            assert!(unavailable_code(code), "{code} should be unavailable");
        }
        for code in [
            "19", "2067", "1555", "23505", "40P01", "42P01", "22P02", "00000",
        ] {
            assert!(!unavailable_code(code), "{code} should not be unavailable");
        }
    }

    #[test]
    fn pool_timeouts_and_io_are_unavailable_but_input_errors_are_not() {
        let e = StoreError::db("x")(sqlx::Error::PoolTimedOut);
        assert!(e.is_unavailable());
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(StoreError::db("x")(sqlx::Error::Io(io)).is_unavailable());
        assert!(!StoreError::InvalidInput("bad".into()).is_unavailable());
        assert!(!StoreError::db("x")(sqlx::Error::RowNotFound).is_unavailable());
    }

    #[test]
    fn refused_data_is_input_not_an_outage() {
        assert!(StoreError::InvalidInput("bad".into()).is_refused_data());
        let fault = StoreError::InvalidFault {
            index: 0,
            reason: "empty cluster".into(),
        };
        assert!(fault.is_refused_data());
        assert!(!StoreError::db("x")(sqlx::Error::PoolTimedOut).is_refused_data());
        assert!(!StoreError::db("x")(sqlx::Error::RowNotFound).is_refused_data());
        assert!(!StoreError::ReadOnly("standby".into()).is_refused_data());
    }
}
