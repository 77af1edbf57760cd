//! The catalog: the only code that touches the file system for data.
//!
//! It finds input tables in either layout (`<table>.parquet` or a `<table>/`
//! directory of part files), checks that each file is Parquet before polars
//! sees it, hands out lazy scans, and writes every output atomically: a file
//! is written beside its target and renamed into place, a directory is built
//! under a temporary name and swapped in, so an interrupted run never leaves
//! a half-written file and never destroys the previous good output.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::schema::Table;

/// How a table is laid out on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One `<table>.parquet` file.
    File,
    /// A `<table>/` directory of part files.
    Parts,
}

/// Where a table's rows are.
#[derive(Debug, Clone, Serialize)]
pub struct TableSource {
    /// The table.
    #[serde(skip)]
    pub table: Table,
    /// File or directory.
    pub layout: Layout,
    /// The `.parquet` file or the directory.
    pub path: PathBuf,
    /// The Parquet files, sorted by name.
    pub files: Vec<PathBuf>,
}

/// Finds `table` under `dir`. `Ok(None)` when neither layout is present.
pub fn locate(dir: &Path, table: Table) -> Result<Option<TableSource>> {
    let file = dir.join(format!("{}.parquet", table.name()));
    let parts = dir.join(table.name());
    match (file.is_file(), parts.is_dir()) {
        (true, true) => Err(Error::BadFile {
            table: table.name().into(),
            path: dir.to_path_buf(),
            reason: format!(
                "both {} and {}/ exist; keep one layout",
                file.display(),
                parts.display()
            ),
        }),
        (true, false) => Ok(Some(TableSource {
            table,
            layout: Layout::File,
            path: file.clone(),
            files: vec![file],
        })),
        (false, true) => {
            let mut files = Vec::new();
            for entry in fs::read_dir(&parts).map_err(Error::io("list", &parts))? {
                let path = entry.map_err(Error::io("list", &parts))?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                // Spark and friends leave `_SUCCESS`, `.crc` and hidden files.
                if path.is_file()
                    && !name.starts_with('_')
                    && !name.starts_with('.')
                    && !name.ends_with(".crc")
                {
                    files.push(path);
                }
            }
            files.sort();
            if files.is_empty() {
                return Err(Error::BadFile {
                    table: table.name().into(),
                    path: parts,
                    reason: "the directory holds no part files".into(),
                });
            }
            Ok(Some(TableSource {
                table,
                layout: Layout::Parts,
                path: parts,
                files,
            }))
        }
        (false, false) => Ok(None),
    }
}

/// Checks a file's Parquet framing (size, leading and trailing magic, footer
/// length) and reads its schema, without loading data.
pub fn read_schema(table: Table, path: &Path) -> Result<(Schema, usize)> {
    let bad = |reason: String| Error::BadFile {
        table: table.name().into(),
        path: path.to_path_buf(),
        reason,
    };
    let mut f = File::open(path).map_err(Error::io("open", path))?;
    let len = f.metadata().map_err(Error::io("stat", path))?.len();
    if len == 0 {
        return Err(bad("the file is empty (0 bytes)".into()));
    }
    if len < 12 {
        return Err(bad(format!(
            "the file is {len} bytes, too short for Parquet"
        )));
    }
    let mut head = [0u8; 4];
    f.read_exact(&mut head).map_err(Error::io("read", path))?;
    let mut tail = [0u8; 8];
    f.seek(SeekFrom::End(-8)).map_err(Error::io("read", path))?;
    f.read_exact(&mut tail).map_err(Error::io("read", path))?;
    if &head != b"PAR1" {
        return Err(bad(
            "no Parquet magic bytes at the start: not a Parquet file".into(),
        ));
    }
    if &tail[4..] != b"PAR1" {
        return Err(bad(
            "no Parquet magic bytes at the end: the file is truncated or still being written"
                .into(),
        ));
    }
    let footer = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
    if footer + 12 > len {
        return Err(bad(format!(
            "footer length {footer} exceeds the file size {len}: the file is truncated"
        )));
    }
    f.seek(SeekFrom::Start(0))
        .map_err(Error::io("read", path))?;
    let mut reader = ParquetReader::new(f);
    let schema = reader
        .schema()
        .map_err(|e| bad(format!("unreadable footer: {e}")))?;
    let rows = reader
        .num_rows()
        .map_err(|e| bad(format!("unreadable footer: {e}")))?;
    let schema = Schema::from_arrow_schema(&schema);
    Ok((schema, rows))
}

/// A lazy scan over a table's files (all parts, in name order).
pub fn scan(source: &TableSource) -> Result<LazyFrame> {
    let paths: Vec<PlRefPath> = source
        .files
        .iter()
        .map(|p| PlRefPath::from(p.to_string_lossy().as_ref()))
        .collect();
    let args = ScanArgsParquet {
        allow_missing_columns: false,
        ..Default::default()
    };
    LazyFrame::scan_parquet_files(paths.into_iter().collect(), args)
        .map_err(Error::polars(format!("scan {}", source.path.display())))
}

/// A path beside `target` for writing before the rename.
fn temp_beside(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
    }
    let tmp = temp_beside(path);
    let result = (|| {
        let mut f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
        write(&mut f)?;
        f.flush().map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(Error::io("rename into place", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a frame as Parquet (zstd), atomically.
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<()> {
    write_atomic(path, |f| {
        ParquetWriter::new(f)
            .finish(df)
            .map_err(Error::polars(format!("write {}", path.display())))?;
        Ok(())
    })
}

/// Writes a frame as CSV with a header, atomically.
pub fn write_csv(path: &Path, df: &mut DataFrame) -> Result<()> {
    write_atomic(path, |f| {
        CsvWriter::new(f)
            .include_header(true)
            .finish(df)
            .map_err(Error::polars(format!("write {}", path.display())))
    })
}

/// Writes a value as pretty JSON with a trailing newline, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |f| {
        serde_json::to_writer_pretty(&mut *f, value).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        f.write_all(b"\n").map_err(Error::io("write", path))
    })
}

/// An output directory built under a temporary name and swapped into place
/// by [`StagedDir::commit`]. Dropped without commit, it removes itself and
/// leaves any previous directory untouched.
#[derive(Debug)]
pub struct StagedDir {
    target: PathBuf,
    staging: PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Starts staging `target`.
    pub fn new(target: &Path) -> Result<Self> {
        let staging = temp_beside(target);
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(Error::io("remove stale", &staging))?;
        }
        fs::create_dir_all(&staging).map_err(Error::io("create directory", &staging))?;
        Ok(StagedDir {
            target: target.to_path_buf(),
            staging,
            committed: false,
        })
    }

    /// Where to write now.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Moves the staged directory into place, replacing any previous one.
    pub fn commit(mut self) -> Result<PathBuf> {
        let old = self.target.with_file_name(format!(
            ".{}.old-{}",
            self.target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let had_old = self.target.exists();
        if had_old {
            fs::rename(&self.target, &old).map_err(Error::io("move aside", &self.target))?;
        }
        if let Err(e) = fs::rename(&self.staging, &self.target) {
            if had_old {
                let _ = fs::rename(&old, &self.target);
            }
            return Err(Error::io("rename into place", &self.target)(e));
        }
        self.committed = true;
        if had_old {
            fs::remove_dir_all(&old).map_err(Error::io("remove previous", &old))?;
        }
        Ok(self.target.clone())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// One Parquet file written a row group at a time (bounded memory).
pub struct ParquetBatches {
    path: PathBuf,
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
}

impl ParquetBatches {
    /// Opens `path` for writing; the schema comes from the first batch.
    pub fn new(path: PathBuf) -> Self {
        ParquetBatches { path, writer: None }
    }

    /// Appends `df` as one or more row groups.
    pub fn write(&mut self, df: &DataFrame) -> Result<()> {
        let ctx = || format!("write {}", self.path.display());
        if self.writer.is_none() {
            let f = File::create(&self.path).map_err(Error::io("create", &self.path))?;
            let w = ParquetWriter::new(f)
                .batched(df.schema())
                .map_err(Error::polars(ctx()))?;
            self.writer = Some(w);
        }
        self.writer
            .as_mut()
            .expect("opened above")
            .write_batch(df)
            .map_err(Error::polars(ctx()))
    }

    /// Writes the footer. `empty` gives the schema when nothing was written.
    pub fn finish(mut self, empty: &DataFrame) -> Result<()> {
        if self.writer.is_none() {
            self.write(empty)?;
        }
        let ctx = format!("write {}", self.path.display());
        self.writer
            .take()
            .expect("opened")
            .finish()
            .map_err(Error::polars(ctx))?;
        Ok(())
    }
}
