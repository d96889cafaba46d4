use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("incident {0} not found")]
    NotFound(String),
    #[error("incident id prefix {prefix:?} is ambiguous: it matches {matches} incidents")]
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
}

impl StoreError {
    /// True when the database could not be reached or is busy: worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database { source, .. } => {
                matches!(
                    source,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Tls(_)
                ) || source
                    .as_database_error()
                    .and_then(|e| e.code())
                    .is_some_and(|c| {
                        c.starts_with("08") || c.starts_with("57P") || c == "5" || c == "6"
                    })
            }
            _ => false,
        }
    }
}
