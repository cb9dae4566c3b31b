//! Writing trial records into a results directory so that shards and hosts can be merged:
//! every process writes its own file (`<prefix>-<host>-<pid>-<nanos>.jsonl`), atomically,
//! and never touches another's.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use qconform_reports::results::{TrialRecord, to_json_lines};

/// Collects records and writes them as one JSON-lines file.
#[derive(Debug)]
pub struct ResultsWriter {
    dir: PathBuf,
    file_name: String,
    records: Mutex<Vec<TrialRecord>>,
}

/// This host's name, made safe for a file name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl ResultsWriter {
    /// A writer for `dir`; the file name is unique per process and start time.
    pub fn new(dir: &Path, prefix: &str) -> ResultsWriter {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        ResultsWriter {
            dir: dir.to_path_buf(),
            file_name: format!(
                "{prefix}-{}-{}-{nanos}.jsonl",
                host_name(),
                std::process::id()
            ),
            records: Mutex::new(Vec::new()),
        }
    }

    /// A writer with a fixed file name (rewritten as a whole on every [`Self::finish`]).
    pub fn with_file_name(dir: &Path, file_name: &str) -> ResultsWriter {
        ResultsWriter {
            dir: dir.to_path_buf(),
            file_name: file_name.to_owned(),
            records: Mutex::new(Vec::new()),
        }
    }

    /// Adds a record.
    pub fn push(&self, r: TrialRecord) {
        if let Ok(mut v) = self.records.lock() {
            v.push(r);
        }
    }

    /// Records so far, sorted by name and stage.
    pub fn records(&self) -> Vec<TrialRecord> {
        let mut v = self.records.lock().map(|v| v.clone()).unwrap_or_default();
        v.sort_by(|a, b| (&a.name, a.stage).cmp(&(&b.name, b.stage)));
        v
    }

    /// Writes all records (sorted) atomically; nothing is written when there are none.
    /// Returns the file written.
    pub fn finish(&self) -> std::io::Result<Option<PathBuf>> {
        let records = self.records();
        if records.is_empty() {
            return Ok(None);
        }
        crate::golden::write_atomic(&self.dir, &self.file_name, &to_json_lines(&records))?;
        Ok(Some(self.dir.join(&self.file_name)))
    }
}
