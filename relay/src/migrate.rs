//! `escalera migrate --from sqlite:DATA_DIR --to postgres://…`: a single-node install moved
//! to PostgreSQL, every row of every table (sites, agents and their sessions, settings,
//! canned replies, the audit log, conversations, messages, files' records, read marks, calls,
//! links), in one transaction: all of it arrives, or nothing does. The files' bytes stay in
//! `DATA_DIR/files`, where the relay on PostgreSQL reads them (`--data-dir`, shared by the
//! nodes).

use std::path::Path;

use rusqlite::types::ValueRef;
use tokio_postgres::types::{ToSql, Type};

use crate::error::StoreError;
use crate::postgres::PgStore;

/// The tables, parents before children, as both schemas have them (SQLite's full-text index
/// is made again by PostgreSQL's own).
const TABLES: &[&str] = &[
    "settings",
    "sites",
    "site_origins",
    "agents",
    "agent_sites",
    "sessions",
    "conversations",
    "visitors",
    "files",
    "messages",
    "reads",
    "calls",
    "canned",
    "audit",
    "links",
];

/// Rows copied, per table, in [`TABLES`]' order.
pub type Copied = Vec<(&'static str, u64)>;

/// One SQLite value, as the PostgreSQL column of type `ty` takes it.
fn value(
    v: ValueRef<'_>,
    ty: &Type,
    table: &str,
    column: &str,
) -> Result<Box<dyn ToSql + Sync + Send>, StoreError> {
    let bad = || {
        StoreError::Invalid(format!(
            "{table}.{column}: {v:?} does not fit PostgreSQL's {ty}"
        ))
    };
    Ok(match (v, ty) {
        (ValueRef::Null, t) if *t == Type::BOOL => Box::new(None::<bool>),
        (ValueRef::Null, t) if *t == Type::INT4 => Box::new(None::<i32>),
        (ValueRef::Null, t) if *t == Type::INT8 => Box::new(None::<i64>),
        (ValueRef::Null, _) => Box::new(None::<String>),
        (ValueRef::Integer(i), t) if *t == Type::BOOL => Box::new(i != 0),
        (ValueRef::Integer(i), t) if *t == Type::INT4 => {
            Box::new(i32::try_from(i).map_err(|_| bad())?)
        }
        (ValueRef::Integer(i), t) if *t == Type::INT8 => Box::new(i),
        (ValueRef::Text(t), ty) if *ty == Type::TEXT => {
            Box::new(String::from_utf8(t.to_vec()).map_err(|_| bad())?)
        }
        _ => return Err(bad()),
    })
}

/// Copies the SQLite record in `data_dir` into the PostgreSQL database at `url` (its schema
/// made first), which must hold no sites, agents or conversations yet.
pub async fn sqlite_to_postgres(data_dir: &Path, url: &str) -> Result<Copied, StoreError> {
    let path = data_dir.join("escalera.db");
    if !path.exists() {
        return Err(StoreError::Invalid(format!(
            "no Escalera database at {}",
            path.display()
        )));
    }
    // Brings the SQLite file up to this relay's schema (a no-op when it is).
    drop(crate::sqlite::SqliteStore::open(data_dir)?);
    let source =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    // One snapshot of the source: a relay still running on it cannot tear the copy.
    source.execute_batch("BEGIN")?;
    PgStore::connect(url).await?;
    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let tx = client.transaction().await?;
    for table in ["sites", "agents", "conversations"] {
        let n: i64 = tx
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await?
            .get(0);
        if n > 0 {
            return Err(StoreError::Invalid(format!(
                "the PostgreSQL database already has {table}: migrate into an empty one"
            )));
        }
    }
    let mut copied = Vec::new();
    for &table in TABLES {
        // The target's columns, by name and type; the source's are the same names.
        let columns: Vec<(String, Type)> = tx
            .prepare(&format!("SELECT * FROM {table} LIMIT 0"))
            .await?
            .columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.type_().clone()))
            .collect();
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let insert = tx
            .prepare(&format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                names.join(", "),
                marks.join(", ")
            ))
            .await?;
        let mut select = source.prepare(&format!("SELECT {} FROM {table}", names.join(", ")))?;
        let mut rows = select.query([])?;
        let mut n = 0u64;
        while let Some(row) = rows.next()? {
            let values = columns
                .iter()
                .enumerate()
                .map(|(i, (name, ty))| value(row.get_ref(i)?, ty, table, name))
                .collect::<Result<Vec<_>, StoreError>>()?;
            let params: Vec<&(dyn ToSql + Sync)> =
                values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
            tx.execute(&insert, &params).await?;
            n += 1;
        }
        copied.push((table, n));
    }
    // The audit log's ids were copied: its sequence goes on after them.
    tx.execute(
        "SELECT setval(pg_get_serial_sequence('audit', 'id'), COALESCE(MAX(id), 0) + 1, false)
         FROM audit",
        &[],
    )
    .await?;
    tx.commit().await?;
    drop(client);
    let _ = connection.await;
    Ok(copied)
}
