//! The SQLite store: one database file in WAL mode, the schema versioned with
//! `PRAGMA user_version`, every group of messages committed in one transaction.
//!
//! Owns the schema and the SQL. Used from the store thread only.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{Head, NewMessage, Store, StoreError, Stored};

/// The schema this build writes; a database with a larger `user_version` was written by
/// a newer Switchboard and is refused rather than misread.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE streams (
    stream TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    acked_seq INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE messages (
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;
CREATE INDEX messages_by_age ON messages (created_ms);
";

/// How hard a commit is pushed to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// The WAL is synced at every commit: a stored message survives power loss.
    Always,
    /// The WAL is synced at checkpoints only: a stored message survives a crash of the
    /// process, but the last commits may be lost if the machine loses power.
    Normal,
}

/// A store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    epoch: String,
    /// Last number given out per stream, as committed.
    last: HashMap<String, u64>,
    /// Streams written since the last prune (count retention only looks at them).
    touched: HashSet<String>,
    pruned_all: bool,
    /// Copies the WAL into the database off the writer's thread (dropping it stops it).
    _checkpointer: Option<Checkpointer>,
}

/// A thread with its own connection that checkpoints the WAL every `CHECKPOINT_EVERY`.
/// SQLite's automatic checkpoint runs inside a commit, so one commit in a thousand would
/// wait for a whole checkpoint (milliseconds); a passive checkpoint from another
/// connection runs beside the writer instead.
#[derive(Debug)]
struct Checkpointer {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl Checkpointer {
    fn start(path: &Path) -> Option<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).ok()?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("switchboard-checkpoint".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!("store: WAL checkpoint failed: {e}");
                    }
                }
            })
            .ok()?;
        Some(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`. `max_bytes` > 0 caps its size (writes
    /// beyond it fail as a full disk would).
    pub fn open(path: &Path, sync: Sync, max_bytes: u64) -> Result<Self, StoreError> {
        let fail = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| fail(e.to_string()))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| fail(format!("not a readable SQLite database ({e})")))?;
        if version > SCHEMA_VERSION {
            return Err(fail(format!(
                "schema version {version} was written by a newer Switchboard (this one reads {SCHEMA_VERSION}); \
                 refusing to touch it"
            )));
        }
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| fail(format!("integrity check failed ({e})")))?;
        if check != "ok" {
            return Err(fail(format!("the database is damaged: {check}")));
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| fail(e.to_string()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(format!("cannot use WAL mode (got {mode})")));
        }
        // A page cache large enough for the hot end of every user's history: SQLite's
        // default (2 MiB) re-reads pages from the OS on most inserts.
        let pragmas = match sync {
            Sync::Always => "PRAGMA synchronous = FULL; PRAGMA cache_size = -65536;",
            Sync::Normal => "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;",
        };
        conn.execute_batch(pragmas)
            .map_err(|e| fail(e.to_string()))?;
        if max_bytes > 0 {
            let page: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(|e| fail(e.to_string()))?;
            let pages = (max_bytes / page.max(512) as u64).max(16);
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
                .map_err(|e| fail(e.to_string()))?;
        }
        if version == 0 {
            let epoch = new_epoch();
            let create = format!(
                "BEGIN; {SCHEMA} INSERT INTO meta VALUES ('epoch', '{epoch}'); \
                 PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            );
            conn.execute_batch(&create)
                .map_err(|e| fail(format!("cannot create the schema: {e}")))?;
        }
        let epoch: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
                r.get(0)
            })
            .map_err(|e| fail(format!("no epoch in the database ({e})")))?;
        let checkpointer = Checkpointer::start(path);
        if checkpointer.is_some() {
            conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(SqliteStore {
            conn,
            epoch,
            last: HashMap::new(),
            touched: HashSet::new(),
            pruned_all: false,
            _checkpointer: checkpointer,
        })
    }

    fn last_seq(&mut self, user: &str) -> Result<u64, StoreError> {
        if let Some(&n) = self.last.get(user) {
            return Ok(n);
        }
        let n: Option<i64> = self
            .conn
            .prepare_cached("SELECT last_seq FROM streams WHERE stream = ?1")
            .and_then(|mut s| s.query_row([user], |r| r.get(0)).optional())
            .map_err(db)?;
        let n = n.unwrap_or(0) as u64;
        self.last.insert(user.to_owned(), n);
        Ok(n)
    }

    fn write_batch(
        &mut self,
        batch: &[NewMessage],
        next: &mut HashMap<String, u64>,
    ) -> Result<Vec<u64>, StoreError> {
        let mut seqs = Vec::with_capacity(batch.len());
        for m in batch {
            let seq = match next.get(&m.stream) {
                Some(&n) => n + 1,
                None => self.last_seq(&m.stream)? + 1,
            };
            next.insert(m.stream.clone(), seq);
            seqs.push(seq);
        }
        let tx = self.conn.transaction().map_err(db)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO messages (stream, seq, created_ms, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(db)?;
            for (m, seq) in batch.iter().zip(&seqs) {
                ins.execute(params![m.stream, *seq as i64, m.created_ms, m.kind, m.body])
                    .map_err(db)?;
            }
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO streams (stream, last_seq) VALUES (?1, ?2) \
                     ON CONFLICT (stream) DO UPDATE SET last_seq = excluded.last_seq",
                )
                .map_err(db)?;
            for (user, seq) in next.iter() {
                up.execute(params![user, *seq as i64]).map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        Ok(seqs)
    }
}

/// A fresh epoch: time and process, enough to differ from any earlier database here.
fn new_epoch() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:04x}", nanos as u64, std::process::id() & 0xffff)
}

impl Store for SqliteStore {
    fn append(&mut self, batch: &[NewMessage]) -> Result<Vec<u64>, StoreError> {
        let mut next = HashMap::new();
        match self.write_batch(batch, &mut next) {
            Ok(seqs) => {
                for (user, seq) in next {
                    self.touched.insert(user.clone());
                    self.last.insert(user, seq);
                }
                Ok(seqs)
            }
            Err(e) => {
                // The transaction rolled back when dropped; the numbers it took are free.
                Err(e)
            }
        }
    }

    fn since(&mut self, user: &str, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT seq, kind, body FROM messages WHERE stream = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(db)?;
        let rows = s
            .query_map(
                params![user, after.min(i64::MAX as u64) as i64, limit as i64],
                |r| {
                    Ok(Stored {
                        seq: r.get::<_, i64>(0)? as u64,
                        kind: r.get(1)?,
                        body: r.get(2)?,
                    })
                },
            )
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn head(&mut self, user: &str) -> Result<Head, StoreError> {
        let row: Option<(i64, i64)> = self
            .conn
            .prepare_cached("SELECT last_seq, acked_seq FROM streams WHERE stream = ?1")
            .and_then(|mut s| {
                s.query_row([user], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(db)?;
        let Some((last, acked)) = row else {
            return Ok(Head {
                last_seq: 0,
                first_kept: 1,
                acked: 0,
            });
        };
        let first: Option<i64> = self
            .conn
            .prepare_cached("SELECT min(seq) FROM messages WHERE stream = ?1")
            .and_then(|mut s| s.query_row([user], |r| r.get(0)))
            .map_err(db)?;
        Ok(Head {
            last_seq: last as u64,
            first_kept: first.map_or(last as u64 + 1, |f| f as u64),
            acked: acked as u64,
        })
    }

    fn ack(&mut self, acks: &[(&str, u64)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(db)?;
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE streams SET acked_seq = ?2 WHERE stream = ?1 AND acked_seq < ?2 AND last_seq >= ?2",
                )
                .map_err(db)?;
            for (user, seq) in acks {
                up.execute(params![user, (*seq).min(i64::MAX as u64) as i64])
                    .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn prune(
        &mut self,
        now_ms: i64,
        max_age_ms: i64,
        keep: &dyn Fn(&str) -> u64,
    ) -> Result<u64, StoreError> {
        let mut dropped = 0u64;
        if max_age_ms > 0 {
            dropped += self
                .conn
                .execute(
                    "DELETE FROM messages WHERE created_ms < ?1",
                    [now_ms - max_age_ms],
                )
                .map_err(db)? as u64;
        }
        {
            let streams: Vec<String> = if self.pruned_all {
                self.touched.iter().cloned().collect()
            } else {
                let mut s = self
                    .conn
                    .prepare("SELECT stream FROM streams")
                    .map_err(db)?;
                let rows = s.query_map([], |r| r.get(0)).map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)?
            };
            let tx = self.conn.transaction().map_err(db)?;
            {
                let mut del = tx
                    .prepare_cached(
                        "DELETE FROM messages WHERE stream = ?1 AND seq <= \
                         (SELECT last_seq FROM streams WHERE stream = ?1) - ?2",
                    )
                    .map_err(db)?;
                for st in &streams {
                    let n = keep(st);
                    if n > 0 {
                        dropped += del.execute(params![st, n as i64]).map_err(db)? as u64;
                    }
                }
            }
            tx.commit().map_err(db)?;
        }
        self.pruned_all = true;
        self.touched.clear();
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(user: &str, n: i64) -> NewMessage {
        NewMessage {
            stream: user.into(),
            kind: "SEND_TO_USER_REQUEST".into(),
            body: format!(r#"{{"n":{n}}}"#),
            created_ms: n,
        }
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sb-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("store.db")
    }

    #[test]
    fn numbers_are_per_user_and_survive_reopening() {
        let path = temp("reopen");
        let epoch;
        {
            let mut s = SqliteStore::open(&path, Sync::Always, 0).unwrap();
            epoch = s.epoch().to_owned();
            let seqs = s.append(&[msg("a", 1), msg("b", 2), msg("a", 3)]).unwrap();
            assert_eq!(seqs, vec![1, 1, 2]);
            s.ack(&[("a", 1), ("a", 9)]).unwrap(); // 9 was never given out: ignored
        }
        let mut s = SqliteStore::open(&path, Sync::Normal, 0).unwrap();
        assert_eq!(s.epoch(), epoch);
        assert_eq!(s.append(&[msg("a", 4)]).unwrap(), vec![3]);
        let got = s.since("a", 1, 10).unwrap();
        assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(got[0].body, r#"{"n":3}"#);
        let h = s.head("a").unwrap();
        assert_eq!((h.last_seq, h.first_kept, h.acked), (3, 1, 1));
        assert_eq!(s.head("nobody").unwrap().last_seq, 0);
    }

    #[test]
    fn retention_keeps_numbers_moving_forward() {
        let path = temp("prune");
        let mut s = SqliteStore::open(&path, Sync::Normal, 0).unwrap();
        s.append(&(1..=10).map(|n| msg("a", n)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(s.prune(100, 0, &|_| 4).unwrap(), 6);
        assert_eq!(s.head("a").unwrap().first_kept, 7);
        assert_eq!(s.prune(100, 92, &|_| 0).unwrap(), 1); // created_ms 7 < 100 - 92
        s.prune(1000, 1, &|_| 0).unwrap();
        let h = s.head("a").unwrap();
        assert_eq!((h.last_seq, h.first_kept), (10, 11));
        assert_eq!(s.append(&[msg("a", 11)]).unwrap(), vec![11]);
    }

    #[test]
    fn newer_or_damaged_databases_are_refused() {
        let path = temp("newer");
        drop(SqliteStore::open(&path, Sync::Normal, 0).unwrap());
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(c);
        let e = SqliteStore::open(&path, Sync::Normal, 0).unwrap_err();
        assert!(e.to_string().contains("newer Switchboard"), "{e}");
        let junk = temp("junk");
        std::fs::create_dir_all(junk.parent().unwrap()).unwrap();
        std::fs::write(&junk, vec![0x5au8; 8192]).unwrap();
        let e = SqliteStore::open(&junk, Sync::Normal, 0).unwrap_err();
        assert!(e.to_string().contains("cannot open the store"), "{e}");
    }

    #[test]
    fn a_full_database_fails_the_batch_and_keeps_the_rest() {
        let path = temp("full");
        let mut s = SqliteStore::open(&path, Sync::Normal, 64 * 1024).unwrap();
        let big = |n| NewMessage {
            body: format!(r#"{{"pad":"{}"}}"#, "x".repeat(4000)),
            ..msg("a", n)
        };
        let mut stored = 0;
        let err = loop {
            match s.append(&[big(stored)]) {
                Ok(_) => stored += 1,
                Err(e) => break e,
            }
            assert!(stored < 1000, "the size cap never applied");
        };
        assert!(err.to_string().contains("full"), "{err}");
        assert_eq!(s.head("a").unwrap().last_seq, stored as u64);
        assert_eq!(s.since("a", 0, 10_000).unwrap().len(), stored as usize);
    }
}
