//! The statements of the PostgreSQL backend and the mapping of their rows (by column name) to
//! the domain types. Each statement says what its SQLite twin says, in PostgreSQL's words
//! (`$n` placeholders, `json` columns read back as their text).

use postgres::Row;
use postgres::types::ToSql;
use serde_json::{Map, Value};

use super::{Location, PgReader, PgWriteTx};
use crate::error::{Error, Result};
use crate::names;
use crate::state::imports::{ImportKind, ImportRecord};
use crate::state::python_base::{Base, Entries};
use crate::state::{
    Document, HookGroup, Intent, IntentFile, IntentOp, LogEntry, Status, StatusCounts,
};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A connection or an open transaction: what every statement below runs on.
pub(crate) trait Sql {
    fn location(&self) -> &Location;
    fn rows(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>>;
    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64>;

    fn row(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }
}

/// The statement for `sql` on `client`, prepared once per connection object.
fn prepared(
    client: &mut impl postgres::GenericClient,
    cache: &super::Statements,
    sql: &str,
) -> std::result::Result<postgres::Statement, postgres::Error> {
    if let Some(statement) = cache.borrow().get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql)?;
    cache.borrow_mut().insert(sql.to_owned(), statement.clone());
    Ok(statement)
}

impl Sql for PgReader {
    fn location(&self) -> &Location {
        &self.location
    }
    fn rows(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let mut conn = self.conn.borrow_mut();
        let super::Conn { client, statements } = &mut **conn;
        prepared(client, statements, sql)
            .and_then(|statement| client.query(&statement, params))
            .map_err(|e| self.location.error(e))
    }
    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        let mut conn = self.conn.borrow_mut();
        let super::Conn { client, statements } = &mut **conn;
        prepared(client, statements, sql)
            .and_then(|statement| client.execute(&statement, params))
            .map_err(|e| self.location.error(e))
    }
}

impl Sql for PgWriteTx<'_> {
    fn location(&self) -> &Location {
        &self.location
    }
    fn rows(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let mut tx = self.tx.borrow_mut();
        prepared(&mut *tx, self.statements, sql)
            .and_then(|statement| tx.query(&statement, params))
            .map_err(|e| self.location.error(e))
    }
    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        let mut tx = self.tx.borrow_mut();
        prepared(&mut *tx, self.statements, sql)
            .and_then(|statement| tx.execute(&statement, params))
            .map_err(|e| self.location.error(e))
    }
}

/// A value read from the database that the domain cannot hold: the database was changed by
/// another program.
fn bad_row(location: &Location, what: String) -> Error {
    Error::Storage {
        location: location.text.clone(),
        message: format!(
            "{what}; the database was changed by another program, run `openkb doctor`"
        ),
    }
}

fn get<'a, T: postgres::types::FromSql<'a>>(
    location: &Location,
    row: &'a Row,
    column: &str,
) -> Result<T> {
    row.try_get(column)
        .map_err(|e| bad_row(location, format!("column {column}: {e}")))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

// Documents.

const DOCUMENT_COLUMNS: &str = "hash, name, doc_name, type, path, raw_path, source_path, doc_id, \
     origin, pages, extra::text AS extra, key_order::text AS key_order, status, error, position, \
     created_at, updated_at";

fn document(location: &Location, row: &Row) -> Result<Document> {
    let g = |c: &str| get::<Option<String>>(location, row, c);
    let extra_text: String = get(location, row, "extra")?;
    let (extra, key_order) = Document::legacy_from_json(&extra_text, g("key_order")?.as_deref())
        .map_err(|(column, what)| bad_row(location, format!("{column}: {what}")))?;
    let status: String = get(location, row, "status")?;
    Ok(Document {
        hash: get(location, row, "hash")?,
        name: g("name")?,
        doc_name: g("doc_name")?,
        doc_type: g("type")?,
        path: g("path")?,
        raw_path: g("raw_path")?,
        source_path: g("source_path")?,
        doc_id: g("doc_id")?,
        origin: g("origin")?,
        pages: get(location, row, "pages")?,
        extra,
        key_order,
        status: status.parse().map_err(|e: String| bad_row(location, e))?,
        error: g("error")?,
        position: get(location, row, "position")?,
        created_at: get(location, row, "created_at")?,
        updated_at: get(location, row, "updated_at")?,
    })
}

fn documents(q: &(impl Sql + ?Sized), sql: &str, params: Params<'_>) -> Result<Vec<Document>> {
    q.rows(sql, params)?
        .iter()
        .map(|r| document(q.location(), r))
        .collect()
}

pub fn get_document(q: &(impl Sql + ?Sized), hash: &str) -> Result<Option<Document>> {
    let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE hash = $1");
    Ok(documents(q, &sql, &[&hash])?.pop())
}

pub fn is_known(q: &(impl Sql + ?Sized), hash: &str) -> Result<bool> {
    Ok(q.row("SELECT 1 FROM documents WHERE hash = $1", &[&hash])?
        .is_some())
}

/// Documents naming `path` as their `path`, `raw_path` or `source_path`, registry order.
pub fn find_by_path(
    q: &(impl Sql + ?Sized),
    path: &str,
    limit: Option<i64>,
) -> Result<Vec<Document>> {
    let sql = format!(
        "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE hash IN (
             SELECT hash FROM documents WHERE path = $1
             UNION SELECT hash FROM documents WHERE raw_path = $1
             UNION SELECT hash FROM documents WHERE source_path = $1)
         ORDER BY position LIMIT $2"
    );
    documents(q, &sql, &[&path, &limit])
}

pub fn claimants_of_path(q: &(impl Sql + ?Sized), path: &str) -> Result<Vec<String>> {
    Ok(find_by_path(q, path, None)?
        .into_iter()
        .map(|d| d.hash)
        .collect())
}

pub fn find_by_doc_name(q: &(impl Sql + ?Sized), doc_name: &str) -> Result<Option<Document>> {
    let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE doc_name = $1");
    Ok(documents(q, &sql, &[&doc_name])?.pop())
}

/// Documents whose name key is NFKC(`name`), registry order.
pub fn find_by_name_key(q: &(impl Sql + ?Sized), name: &str) -> Result<Vec<Document>> {
    let sql =
        format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE name_key = $1 ORDER BY position");
    documents(q, &sql, &[&names::nfkc(name)])
}

pub fn for_each_document(
    q: &(impl Sql + ?Sized),
    visit: &mut dyn FnMut(Document) -> Result<()>,
) -> Result<()> {
    let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents ORDER BY position");
    for row in q.rows(&sql, &[])? {
        visit(document(q.location(), &row)?)?;
    }
    Ok(())
}

pub fn list(q: &(impl Sql + ?Sized)) -> Result<Vec<Document>> {
    let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents ORDER BY position");
    documents(q, &sql, &[])
}

pub fn counts(q: &(impl Sql + ?Sized)) -> Result<StatusCounts> {
    let mut counts = StatusCounts::default();
    for row in q.rows("SELECT status, n FROM document_counts", &[])? {
        let status: String = get(q.location(), &row, "status")?;
        let n = to_u64(get(q.location(), &row, "n")?);
        match status.as_str() {
            "pending" => counts.pending = n,
            "compiled" => counts.compiled = n,
            "failed" => counts.failed = n,
            _ => {}
        }
    }
    Ok(counts)
}

/// Insert or update `doc` by hash. An update keeps the position and `created_at`; a new row
/// takes the next position. (Hash shape and `doc_name` ownership were checked by `WriteTx`;
/// the constraints refuse what slips past.)
pub fn upsert_document(q: &(impl Sql + ?Sized), doc: &Document, now: &str) -> Result<()> {
    let (extra, key_order) = doc.legacy_json();
    let sql = "INSERT INTO documents (hash, name, doc_name, type, path, raw_path, source_path,
             doc_id, origin, pages, extra, key_order, name_key, status, error, created_at,
             updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::json, $12::text::json, $13,
             $14, $15, $16, $16)
         ON CONFLICT (hash) DO UPDATE SET ";
    let name_key = doc.name_key();
    let status = doc.status.as_str();
    let params: [&(dyn ToSql + Sync); 16] = [
        &doc.hash,
        &doc.name,
        &doc.doc_name,
        &doc.doc_type,
        &doc.path,
        &doc.raw_path,
        &doc.source_path,
        &doc.doc_id,
        &doc.origin,
        &doc.pages,
        &extra,
        &key_order,
        &name_key,
        &status,
        &doc.error,
        &now,
    ];
    q.execute(&format!("{sql}{UPSERT_SET}"), &params)?;
    Ok(())
}

/// What an upsert of a registered hash replaces: every field but its position and
/// `created_at`.
const UPSERT_SET: &str = "name = excluded.name, doc_name = excluded.doc_name, \
     type = excluded.type, path = excluded.path, raw_path = excluded.raw_path, \
     source_path = excluded.source_path, doc_id = excluded.doc_id, origin = excluded.origin, \
     pages = excluded.pages, extra = excluded.extra, key_order = excluded.key_order, \
     name_key = excluded.name_key, status = excluded.status, error = excluded.error, \
     updated_at = excluded.updated_at";

/// How [`insert_documents`] places its rows.
pub enum Insert<'a> {
    /// After every registered document, stamped `now`; a registered hash is updated in place
    /// (its position and `created_at` kept), as by [`upsert_document`].
    Append { now: &'a str },
    /// Exactly as given (positions, timestamps): a copy from another backend. A registered
    /// hash fails. The position sequence moves past the copied positions.
    Copy,
}

/// Insert `docs` in order with ONE statement (arrays unnested server-side): one round trip
/// and one run of the counting triggers for the whole batch.
pub fn insert_documents(q: &(impl Sql + ?Sized), docs: &[Document], how: Insert<'_>) -> Result<()> {
    if docs.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&Document) -> Option<String>| docs.iter().map(f).collect::<Vec<_>>();
    let hashes: Vec<String> = docs.iter().map(|d| d.hash.clone()).collect();
    let (extras, key_orders): (Vec<String>, Vec<Option<String>>) =
        docs.iter().map(Document::legacy_json).unzip();
    let name_keys: Vec<String> = docs.iter().map(Document::name_key).collect();
    let statuses: Vec<String> = docs.iter().map(|d| d.status.as_str().to_owned()).collect();
    let pages: Vec<Option<i64>> = docs.iter().map(|d| d.pages).collect();
    let (created, updated, positions): (Vec<String>, Vec<String>, Vec<i64>) = match how {
        Insert::Append { now } => (
            vec![now.to_owned(); docs.len()],
            vec![now.to_owned(); docs.len()],
            Vec::new(),
        ),
        Insert::Copy => (
            docs.iter().map(|d| d.created_at.clone()).collect(),
            docs.iter().map(|d| d.updated_at.clone()).collect(),
            docs.iter().map(|d| d.position).collect(),
        ),
    };
    let (name, doc_name, doc_type) = (
        text(|d| d.name.clone()),
        text(|d| d.doc_name.clone()),
        text(|d| d.doc_type.clone()),
    );
    let (path, raw_path, source_path) = (
        text(|d| d.path.clone()),
        text(|d| d.raw_path.clone()),
        text(|d| d.source_path.clone()),
    );
    let (doc_id, origin, error) = (
        text(|d| d.doc_id.clone()),
        text(|d| d.origin.clone()),
        text(|d| d.error.clone()),
    );
    let columns = "hash, name, doc_name, type, path, raw_path, source_path, doc_id, origin, \
         pages, extra, key_order, name_key, status, error, created_at, updated_at";
    let unnest = "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[], \
         $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], \
         $18::bigint[]) WITH ORDINALITY AS r(hash, name, doc_name, type, path, raw_path, \
         source_path, doc_id, origin, pages, extra, key_order, name_key, status, error, \
         created_at, updated_at, position, ord)";
    let values = "r.hash, r.name, r.doc_name, r.type, r.path, r.raw_path, r.source_path, \
         r.doc_id, r.origin, r.pages, r.extra::json, r.key_order::json, r.name_key, r.status, \
         r.error, r.created_at, r.updated_at";
    let sql = match how {
        Insert::Append { .. } => format!(
            "INSERT INTO documents ({columns}) SELECT {values} FROM {unnest} ORDER BY r.ord
             ON CONFLICT (hash) DO UPDATE SET {UPSERT_SET}"
        ),
        Insert::Copy => format!(
            "WITH copied AS (
                 INSERT INTO documents ({columns}, position) OVERRIDING SYSTEM VALUE
                 SELECT {values}, r.position FROM {unnest} ORDER BY r.ord
                 RETURNING position)
             SELECT setval('documents_position_seq', greatest(
                 (SELECT max(position) FROM copied),
                 (SELECT last_value FROM documents_position_seq)))"
        ),
    };
    q.execute(
        &sql,
        &[
            &hashes,
            &name,
            &doc_name,
            &doc_type,
            &path,
            &raw_path,
            &source_path,
            &doc_id,
            &origin,
            &pages,
            &extras,
            &key_orders,
            &name_keys,
            &statuses,
            &error,
            &created,
            &updated,
            &positions,
        ],
    )
    .map(drop)
}

pub fn set_status(
    q: &(impl Sql + ?Sized),
    hash: &str,
    status: Status,
    error: Option<&str>,
    now: &str,
) -> Result<bool> {
    let changed = q.execute(
        "UPDATE documents SET status = $2, error = $3, updated_at = $4 WHERE hash = $1",
        &[&hash, &status.as_str(), &error, &now],
    )?;
    Ok(changed > 0)
}

pub fn remove_document(q: &(impl Sql + ?Sized), hash: &str) -> Result<bool> {
    Ok(q.execute("DELETE FROM documents WHERE hash = $1", &[&hash])? > 0)
}

// Log.

const LOG_COLUMNS: &str = "id, timestamp, operation, description, recorded_at";

fn log_entry(location: &Location, row: &Row) -> Result<LogEntry> {
    Ok(LogEntry {
        id: get(location, row, "id")?,
        timestamp: get(location, row, "timestamp")?,
        operation: get(location, row, "operation")?,
        description: get(location, row, "description")?,
        recorded_at: get(location, row, "recorded_at")?,
    })
}

fn log_entries(q: &(impl Sql + ?Sized), sql: &str, params: Params<'_>) -> Result<Vec<LogEntry>> {
    q.rows(sql, params)?
        .iter()
        .map(|r| log_entry(q.location(), r))
        .collect()
}

/// Append a log row; `recorded_at` is `None` for imported history.
pub fn append_log(
    q: &(impl Sql + ?Sized),
    timestamp: &str,
    operation: &str,
    description: &str,
    recorded_at: Option<&str>,
) -> Result<LogEntry> {
    let row = q
        .row(
            "INSERT INTO log (timestamp, operation, description, recorded_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
            &[&timestamp, &operation, &description, &recorded_at],
        )?
        .ok_or_else(|| bad_row(q.location(), "INSERT ... RETURNING gave no row".into()))?;
    Ok(LogEntry {
        id: get(q.location(), &row, "id")?,
        timestamp: timestamp.to_owned(),
        operation: operation.to_owned(),
        description: description.to_owned(),
        recorded_at: recorded_at.map(str::to_owned),
    })
}

/// Copy log rows with their ids (a move between backends keeps the ids users have seen), in
/// one statement; the id sequence moves past them.
pub fn copy_log_entries(q: &(impl Sql + ?Sized), entries: &[LogEntry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
    let timestamps: Vec<&str> = entries.iter().map(|e| e.timestamp.as_str()).collect();
    let operations: Vec<&str> = entries.iter().map(|e| e.operation.as_str()).collect();
    let descriptions: Vec<&str> = entries.iter().map(|e| e.description.as_str()).collect();
    let recorded: Vec<Option<&str>> = entries.iter().map(|e| e.recorded_at.as_deref()).collect();
    q.execute(
        "WITH copied AS (
             INSERT INTO log (id, timestamp, operation, description, recorded_at)
             OVERRIDING SYSTEM VALUE
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
             RETURNING id)
         SELECT setval('log_id_seq', greatest(
             (SELECT max(id) FROM copied), (SELECT last_value FROM log_id_seq)))",
        &[&ids, &timestamps, &operations, &descriptions, &recorded],
    )
    .map(drop)
}

/// Append imported log entries (timestamp, operation, description; no `recorded_at`), in
/// order, in batches of one statement each.
pub fn append_imported_log(
    q: &(impl Sql + ?Sized),
    entries: &mut dyn Iterator<Item = (&str, &str, &str)>,
) -> Result<()> {
    let mut batch: Vec<(&str, &str, &str)> = Vec::new();
    loop {
        batch.clear();
        batch.extend((&mut *entries).take(1000));
        if batch.is_empty() {
            return Ok(());
        }
        let timestamps: Vec<&str> = batch.iter().map(|e| e.0).collect();
        let operations: Vec<&str> = batch.iter().map(|e| e.1).collect();
        let descriptions: Vec<&str> = batch.iter().map(|e| e.2).collect();
        q.execute(
            "INSERT INTO log (timestamp, operation, description)
             SELECT t, o, d FROM unnest($1::text[], $2::text[], $3::text[])
                 WITH ORDINALITY AS r(t, o, d, ord)
             ORDER BY ord",
            &[&timestamps, &operations, &descriptions],
        )?;
    }
}

/// The newest `limit` entries (all when `None`), optionally of one operation, oldest first.
pub fn log_tail(
    q: &(impl Sql + ?Sized),
    limit: Option<u64>,
    operation: Option<&str>,
) -> Result<Vec<LogEntry>> {
    let limit = limit.map(to_i64);
    let mut entries = match operation {
        Some(op) => log_entries(
            q,
            &format!(
                "SELECT {LOG_COLUMNS} FROM log WHERE operation = $1 ORDER BY id DESC LIMIT $2"
            ),
            &[&op, &limit],
        )?,
        None => log_entries(
            q,
            &format!("SELECT {LOG_COLUMNS} FROM log ORDER BY id DESC LIMIT $1"),
            &[&limit],
        )?,
    };
    entries.reverse();
    Ok(entries)
}

pub fn for_each_log_entry(
    q: &(impl Sql + ?Sized),
    visit: &mut dyn FnMut(LogEntry) -> Result<()>,
) -> Result<()> {
    for row in q.rows(&format!("SELECT {LOG_COLUMNS} FROM log ORDER BY id"), &[])? {
        visit(log_entry(q.location(), &row)?)?;
    }
    Ok(())
}

pub fn log_count(q: &(impl Sql + ?Sized)) -> Result<u64> {
    count(q, "log")
}

fn count(q: &(impl Sql + ?Sized), table: &str) -> Result<u64> {
    let row = q
        .row(&format!("SELECT count(*) AS n FROM {table}"), &[])?
        .ok_or_else(|| bad_row(q.location(), "count(*) gave no row".into()))?;
    Ok(to_u64(get(q.location(), &row, "n")?))
}

// Meta.

pub fn meta(q: &(impl Sql + ?Sized), key: &str) -> Result<Option<String>> {
    match q.row("SELECT value FROM meta WHERE key = $1", &[&key])? {
        Some(row) => Ok(Some(get(q.location(), &row, "value")?)),
        None => Ok(None),
    }
}

pub fn set_meta(q: &(impl Sql + ?Sized), key: &str, value: &str) -> Result<()> {
    q.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&key, &value],
    )
    .map(drop)
}

/// The value under `key`, a fresh random 128-bit hex id stored first when there is none.
pub fn ensure_random_meta(q: &(impl Sql + ?Sized), key: &str) -> Result<String> {
    q.execute(
        "INSERT INTO meta (key, value) VALUES ($1, replace(gen_random_uuid()::text, '-', ''))
         ON CONFLICT (key) DO NOTHING",
        &[&key],
    )?;
    meta(q, key)?.ok_or_else(|| bad_row(q.location(), format!("meta {key} vanished")))
}

// Intents.

fn intent(location: &Location, row: &Row) -> Result<Intent> {
    let op: String = get(location, row, "operation")?;
    let files: String = get(location, row, "files")?;
    let hook_pgid: Option<i64> = get(location, row, "hook_pgid")?;
    let hook_token: Option<String> = get(location, row, "hook_token")?;
    Ok(Intent {
        id: get(location, row, "id")?,
        operation: [IntentOp::Add, IntentOp::Remove, IntentOp::Compile]
            .into_iter()
            .find(|o| o.as_str() == op)
            .ok_or_else(|| bad_row(location, format!("unknown intent operation {op:?}")))?,
        hash: get(location, row, "hash")?,
        doc_name: get(location, row, "doc_name")?,
        files: serde_json::from_str::<Vec<IntentFile>>(&files).map_err(|e| {
            bad_row(
                location,
                format!("intent files are not a list of files: {e}"),
            )
        })?,
        started_at: get(location, row, "started_at")?,
        pid: get(location, row, "pid")?,
        // Read from disk: an id that is not a plausible process group is never signalled.
        hook: match (hook_pgid, hook_token) {
            (Some(pgid), Some(token)) if !token.is_empty() => i32::try_from(pgid)
                .ok()
                .filter(|&p| p > 1)
                .map(|pgid| HookGroup { pgid, token }),
            _ => None,
        },
    })
}

pub fn unfinished_intents(q: &(impl Sql + ?Sized)) -> Result<Vec<Intent>> {
    q.rows(
        "SELECT id, operation, hash, doc_name, files::text AS files, started_at, pid, hook_pgid,
             hook_token
         FROM intents ORDER BY id",
        &[],
    )?
    .iter()
    .map(|r| intent(q.location(), r))
    .collect()
}

pub fn unfinished_intent_count(q: &(impl Sql + ?Sized)) -> Result<u64> {
    count(q, "intents")
}

pub fn record_intent(
    q: &(impl Sql + ?Sized),
    operation: IntentOp,
    hash: &str,
    doc_name: Option<&str>,
    files: &[IntentFile],
    started_at: &str,
    pid: i64,
) -> Result<i64> {
    let files = IntentFile::list_to_json(files)?;
    let row = q
        .row(
            "INSERT INTO intents (operation, hash, doc_name, files, started_at, pid)
             VALUES ($1, $2, $3, $4::text::json, $5, $6) RETURNING id",
            &[
                &operation.as_str(),
                &hash,
                &doc_name,
                &files,
                &started_at,
                &pid,
            ],
        )?
        .ok_or_else(|| bad_row(q.location(), "INSERT ... RETURNING gave no row".into()))?;
    get(q.location(), &row, "id")
}

pub fn record_intent_hook(q: &(impl Sql + ?Sized), id: i64, hook: &HookGroup) -> Result<bool> {
    let changed = q.execute(
        "UPDATE intents SET hook_pgid = $2, hook_token = $3 WHERE id = $1",
        &[&id, &i64::from(hook.pgid), &hook.token],
    )?;
    Ok(changed > 0)
}

pub fn delete_intent(q: &(impl Sql + ?Sized), id: i64) -> Result<bool> {
    Ok(q.execute("DELETE FROM intents WHERE id = $1", &[&id])? > 0)
}

// Imports.

fn import(location: &Location, row: &Row) -> Result<ImportRecord> {
    let kind: String = get(location, row, "kind")?;
    let n = |c: &str| get::<i64>(location, row, c).map(to_u64);
    Ok(ImportRecord {
        id: get(location, row, "id")?,
        kind: [ImportKind::Initial, ImportKind::DriftMerge]
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| bad_row(location, format!("unknown import kind {kind:?}")))?,
        source_path: get(location, row, "source_path")?,
        source_sha256: get(location, row, "source_sha256")?,
        source_bytes: n("source_bytes")?,
        moved_to: get(location, row, "moved_to")?,
        entries: n("entries")?,
        new_entries: n("new_entries")?,
        conflicting_entries: n("conflicting_entries")?,
        log_entries: n("log_entries")?,
        journals_recovered: n("journals_recovered")?,
        imported_at: get(location, row, "imported_at")?,
    })
}

pub fn imports(q: &(impl Sql + ?Sized)) -> Result<Vec<ImportRecord>> {
    q.rows(
        "SELECT id, kind, source_path, source_sha256, source_bytes, moved_to, entries,
             new_entries, conflicting_entries, log_entries, journals_recovered, imported_at
         FROM imports ORDER BY id",
        &[],
    )?
    .iter()
    .map(|r| import(q.location(), r))
    .collect()
}

/// Store `record` with `imported_at = now`; returns it with its id.
pub fn record_import(
    q: &(impl Sql + ?Sized),
    record: &ImportRecord,
    now: &str,
) -> Result<ImportRecord> {
    let imported_at = now.to_owned();
    let row = q
        .row(
            "INSERT INTO imports (kind, source_path, source_sha256, source_bytes, moved_to,
                 entries, new_entries, conflicting_entries, log_entries, journals_recovered,
                 imported_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            &[
                &record.kind.as_str(),
                &record.source_path,
                &record.source_sha256,
                &to_i64(record.source_bytes),
                &record.moved_to,
                &to_i64(record.entries),
                &to_i64(record.new_entries),
                &to_i64(record.conflicting_entries),
                &to_i64(record.log_entries),
                &to_i64(record.journals_recovered),
                &imported_at,
            ],
        )?
        .ok_or_else(|| bad_row(q.location(), "INSERT ... RETURNING gave no row".into()))?;
    Ok(ImportRecord {
        id: get(q.location(), &row, "id")?,
        imported_at,
        ..record.clone()
    })
}

// Untrusted entries.

pub fn untrusted_reason(q: &(impl Sql + ?Sized), hash: &str) -> Result<Option<String>> {
    match q.row(
        "SELECT reason FROM untrusted_entries WHERE hash = $1",
        &[&hash],
    )? {
        Some(row) => Ok(Some(get(q.location(), &row, "reason")?)),
        None => Ok(None),
    }
}

pub fn untrusted_list(q: &(impl Sql + ?Sized)) -> Result<Vec<(String, String)>> {
    q.rows(
        "SELECT u.hash, u.reason FROM untrusted_entries u
         JOIN documents d ON d.hash = u.hash ORDER BY d.position",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok((
            get(q.location(), r, "hash")?,
            get(q.location(), r, "reason")?,
        ))
    })
    .collect()
}

pub fn mark_untrusted(q: &(impl Sql + ?Sized), hash: &str, reason: &str) -> Result<()> {
    q.execute(
        "INSERT INTO untrusted_entries (hash, reason) VALUES ($1, $2)
         ON CONFLICT (hash) DO UPDATE SET reason = excluded.reason",
        &[&hash, &reason],
    )
    .map(drop)
}

// Python hand-overs.

pub fn record_migrate_handover(
    q: &(impl Sql + ?Sized),
    sha256: &str,
    entries: u64,
    kept_as: &str,
    now: &str,
) -> Result<()> {
    q.execute("DELETE FROM python_base", &[])?;
    q.execute(
        "INSERT INTO python_handovers (kind, hashes_json_sha256, entries, kept_as,
             handed_over_at)
         VALUES ('migrate', $1, $2, $3, $4)",
        &[&sha256, &to_i64(entries), &kept_as, &now],
    )
    .map(drop)
}

pub fn record_export_handover(
    q: &(impl Sql + ?Sized),
    sha256: &str,
    entries: &mut dyn Iterator<Item = (String, Map<String, Value>)>,
    now: &str,
) -> Result<()> {
    q.execute("DELETE FROM python_base", &[])?;
    let mut count = 0i64;
    for (hash, entry) in entries {
        count += 1;
        q.execute(
            "INSERT INTO python_base (hash, position, entry) VALUES ($1, $2, $3::text::json)",
            &[&hash, &count, &Value::Object(entry).to_string()],
        )?;
    }
    q.execute(
        "INSERT INTO python_handovers (kind, hashes_json_sha256, entries, handed_over_at)
         VALUES ('export', $1, $2, $3)",
        &[&sha256, &count, &now],
    )
    .map(drop)
}

pub fn python_base(q: &(impl Sql + ?Sized)) -> Result<Option<Base>> {
    let Some(latest) = q.row(
        "SELECT kind, hashes_json_sha256, kept_as FROM python_handovers ORDER BY id DESC LIMIT 1",
        &[],
    )?
    else {
        return Ok(None);
    };
    let location = q.location();
    let kind: String = get(location, &latest, "kind")?;
    let sha256: String = get(location, &latest, "hashes_json_sha256")?;
    if kind == "migrate" {
        let kept_as: Option<String> = get(location, &latest, "kept_as")?;
        return Ok(Some(Base::File {
            kept_as: kept_as.unwrap_or_default().into(),
            sha256,
        }));
    }
    let mut entries: Entries = Vec::new();
    for row in q.rows(
        "SELECT hash, entry::text AS entry FROM python_base ORDER BY position",
        &[],
    )? {
        let hash: String = get(location, &row, "hash")?;
        let text: String = get(location, &row, "entry")?;
        match crate::state::python_base::parse_entry(&text) {
            Some(entry) => entries.push((hash, entry)),
            None => {
                return Err(bad_row(
                    location,
                    format!("the python_base row of {hash} is not a JSON object"),
                ));
            }
        }
    }
    Ok(Some(Base::Entries(entries)))
}
