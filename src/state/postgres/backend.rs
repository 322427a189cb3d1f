//! The storage traits (`state::backend`) for PostgreSQL: each method is one statement of
//! [`rows`](super::rows), run on a pooled connection (reads) or in the write transaction.

use std::path::Path;

use serde_json::{Map, Value};

use super::rows::{self, Sql};
use super::{PgReader, PgStore, PgWriteTx, schema};
use crate::error::Result;
use crate::state::backend::{Backend, CheckDepth, Description, DiskUsage, Reads, Writes};
use crate::state::imports::ImportRecord;
use crate::state::python_base::Base;
use crate::state::{
    Document, FileId, HookGroup, Intent, IntentFile, IntentOp, LogEntry, Status, StatusCounts,
};

impl Backend for PgStore {
    fn location(&self) -> &Path {
        Path::new(&self.location_text)
    }

    fn describe(&self) -> Result<Description> {
        let reader = self.reader()?;
        let row = reader.row(
            "SELECT 'PostgreSQL ' || current_setting('server_version') AS v, \
             (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl) AS tls",
            &[],
        )?;
        let (version, tls) = match row {
            Some(row) => (
                row.get::<_, String>("v"),
                row.get::<_, Option<String>>("tls"),
            ),
            None => (String::new(), None),
        };
        Ok(Description {
            backend: "postgresql",
            engine_version: version,
            schema_version: self.schema_version,
            location: self.location_text.clone(),
            journal_mode: None,
            tls: tls.map(|protocol| format!("{protocol} (sslmode={})", self.connector.mode())),
        })
    }

    fn schema_version(&self) -> i64 {
        self.schema_version
    }

    fn is_too_new(&self) -> bool {
        self.too_new
    }

    fn ensure_writable(&self) -> Result<()> {
        PgStore::ensure_writable(self)
    }

    fn check_still_in_place(&self) -> Result<()> {
        // A schema cannot be swapped under a connection the way a file can: a schema moved
        // aside (`migrate --to-sqlite`) makes every statement fail instead.
        Ok(())
    }

    fn file_id(&self) -> Option<FileId> {
        None
    }

    fn reader(&self) -> Result<Box<dyn Reads>> {
        Ok(Box::new(PgStore::reader(self)?))
    }

    fn write(&self, body: &mut dyn FnMut(&dyn Writes) -> Result<()>) -> Result<()> {
        PgStore::write(self, None, |tx| body(tx))
    }

    fn checkpoint(&self) -> Result<()> {
        Ok(())
    }

    fn end_write_session(&self) {}

    fn check_integrity(&self, depth: CheckDepth) -> Result<Vec<String>> {
        let reader = self.reader()?;
        let mut findings = Vec::new();
        for row in reader.rows(
            "SELECT c.status, c.n, (SELECT count(*) FROM documents d WHERE d.status = c.status)
                 AS actual
             FROM document_counts c ORDER BY c.status",
            &[],
        )? {
            let (status, kept, actual): (String, i64, i64) =
                (row.get("status"), row.get("n"), row.get("actual"));
            if kept != actual {
                findings.push(format!(
                    "document_counts says {kept} {status} document(s), the registry holds \
                     {actual}; `openkb doctor --fix` recounts"
                ));
            }
        }
        if depth == CheckDepth::Full {
            rows::for_each_document(&reader, &mut |doc| {
                let stored = reader
                    .row(
                        "SELECT name_key FROM documents WHERE hash = $1",
                        &[&doc.hash],
                    )?
                    .map(|r| r.get::<_, String>("name_key"));
                if stored.as_deref() != Some(doc.name_key().as_str()) {
                    findings.push(format!(
                        "document {}: its stored name key is not the NFKC of its name",
                        doc.hash
                    ));
                }
                Ok(())
            })?;
        }
        Ok(findings)
    }

    fn rebuild_derived(&self) -> Result<()> {
        PgStore::write(self, None, |tx| {
            tx.execute(
                "UPDATE document_counts c
                 SET n = (SELECT count(*) FROM documents d WHERE d.status = c.status)",
                &[],
            )?;
            for table in schema::TABLES {
                tx.execute(&format!("REINDEX TABLE {table}"), &[])?;
            }
            Ok(())
        })
    }

    fn disk_usage(&self) -> Result<DiskUsage> {
        let reader = self.reader()?;
        let bytes: i64 = reader
            .row(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
                &[&self.schema],
            )?
            .map_or(0, |r| r.get("bytes"));
        Ok(DiskUsage {
            database_bytes: u64::try_from(bytes).unwrap_or(0),
            pending_log_bytes: 0,
        })
    }
}

/// The reads, for a pooled connection and a write transaction alike.
macro_rules! pg_reads {
    ($type:ty) => {
        impl Reads for $type {
            fn location(&self) -> &Path {
                Path::new(&Sql::location(self).text)
            }
            fn get(&self, hash: &str) -> Result<Option<Document>> {
                rows::get_document(self, hash)
            }
            fn is_known(&self, hash: &str) -> Result<bool> {
                rows::is_known(self, hash)
            }
            fn find_by_path(&self, path: &str) -> Result<Option<Document>> {
                Ok(rows::find_by_path(self, path, Some(1))?.pop())
            }
            fn claimants_of_path(&self, path: &str) -> Result<Vec<String>> {
                rows::claimants_of_path(self, path)
            }
            fn find_by_doc_name(&self, doc_name: &str) -> Result<Option<Document>> {
                rows::find_by_doc_name(self, doc_name)
            }
            fn find_by_name_key(&self, key: &str) -> Result<Vec<Document>> {
                rows::find_by_name_key(self, key)
            }
            fn for_each_document(
                &self,
                visit: &mut dyn FnMut(Document) -> Result<()>,
            ) -> Result<()> {
                rows::for_each_document(self, visit)
            }
            fn list(&self) -> Result<Vec<Document>> {
                rows::list(self)
            }
            fn counts(&self) -> Result<StatusCounts> {
                rows::counts(self)
            }
            fn log_tail(
                &self,
                limit: Option<u64>,
                operation: Option<&str>,
            ) -> Result<Vec<LogEntry>> {
                rows::log_tail(self, limit, operation)
            }
            fn log_count(&self) -> Result<u64> {
                rows::log_count(self)
            }
            fn for_each_log_entry(
                &self,
                visit: &mut dyn FnMut(LogEntry) -> Result<()>,
            ) -> Result<()> {
                rows::for_each_log_entry(self, visit)
            }
            fn unfinished_intents(&self) -> Result<Vec<Intent>> {
                rows::unfinished_intents(self)
            }
            fn unfinished_intent_count(&self) -> Result<u64> {
                rows::unfinished_intent_count(self)
            }
            fn imports(&self) -> Result<Vec<ImportRecord>> {
                rows::imports(self)
            }
            fn meta(&self, key: &str) -> Result<Option<String>> {
                rows::meta(self, key)
            }
            fn untrusted_reason(&self, hash: &str) -> Result<Option<String>> {
                rows::untrusted_reason(self, hash)
            }
            fn untrusted_entries(&self) -> Result<Vec<(String, String)>> {
                rows::untrusted_list(self)
            }
            fn python_base(&self) -> Result<Option<Base>> {
                rows::python_base(self)
            }
        }
    };
}

pg_reads!(PgReader);
pg_reads!(PgWriteTx<'_>);

impl Writes for PgWriteTx<'_> {
    fn upsert_document(&self, doc: &Document, now: &str) -> Result<()> {
        rows::upsert_document(self, doc, now)
    }

    fn set_status(
        &self,
        hash: &str,
        status: Status,
        error: Option<&str>,
        now: &str,
    ) -> Result<bool> {
        rows::set_status(self, hash, status, error, now)
    }

    fn remove_document(&self, hash: &str) -> Result<bool> {
        rows::remove_document(self, hash)
    }

    fn append_documents(&self, docs: &[Document], now: &str) -> Result<()> {
        rows::insert_documents(self, docs, rows::Insert::Append { now })
    }

    fn append_log(
        &self,
        timestamp: &str,
        operation: &str,
        description: &str,
        recorded_at: Option<&str>,
    ) -> Result<LogEntry> {
        rows::append_log(self, timestamp, operation, description, recorded_at)
    }

    fn append_log_entries(
        &self,
        entries: &mut dyn Iterator<Item = (&str, &str, &str)>,
    ) -> Result<()> {
        rows::append_imported_log(self, entries)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        rows::set_meta(self, key, value)
    }

    fn ensure_random_meta(&self, key: &str) -> Result<String> {
        rows::ensure_random_meta(self, key)
    }

    fn record_intent(
        &self,
        operation: IntentOp,
        hash: &str,
        doc_name: Option<&str>,
        files: &[IntentFile],
        started_at: &str,
        pid: i64,
    ) -> Result<i64> {
        rows::record_intent(self, operation, hash, doc_name, files, started_at, pid)
    }

    fn record_intent_hook(&self, id: i64, hook: &HookGroup) -> Result<bool> {
        rows::record_intent_hook(self, id, hook)
    }

    fn delete_intent(&self, id: i64) -> Result<bool> {
        rows::delete_intent(self, id)
    }

    fn record_import(&self, record: &ImportRecord, now: &str) -> Result<ImportRecord> {
        rows::record_import(self, record, now)
    }

    fn mark_untrusted(&self, hash: &str, reason: &str) -> Result<()> {
        rows::mark_untrusted(self, hash, reason)
    }

    fn record_python_migrate(
        &self,
        sha256: &str,
        entries: u64,
        kept_as: &str,
        now: &str,
    ) -> Result<()> {
        rows::record_migrate_handover(self, sha256, entries, kept_as, now)
    }

    fn record_python_export(
        &self,
        sha256: &str,
        entries: &mut dyn Iterator<Item = (String, Map<String, Value>)>,
        now: &str,
    ) -> Result<()> {
        rows::record_export_handover(self, sha256, entries, now)
    }

    fn copy_documents(&self, docs: &[Document]) -> Result<()> {
        rows::insert_documents(self, docs, rows::Insert::Copy)
    }

    fn copy_log_entries(&self, entries: &[LogEntry]) -> Result<()> {
        rows::copy_log_entries(self, entries)
    }
}
