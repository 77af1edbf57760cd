//! The catalog: the only code that touches the file system or builds a
//! data path (a test over the sources holds every other file to it).
//!
//! It names every dataset: the input tables under the data directory, and
//! under the output directory each stage's folder, named as the stage
//! (`validate/`, `features/`, `score/`, `simulate/`) and the model versions
//! (`models/vNNNN/`). Commands ask it for frames and hand it results; stages
//! never see a path.
//!
//! It finds input tables in either layout (`<table>.parquet` or a `<table>/`
//! directory of part files), checks that each file is Parquet before polars
//! sees it, hands out lazy scans, and writes every output atomically: a file
//! is written beside its target and renamed into place, a directory is built
//! under a temporary name and swapped in, so an interrupted run never leaves
//! a half-written file and never destroys the previous good output.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use crate::artifact::{ChurnModel, ModelKind, ModelSet, ReturnModel, SecondLifetimeModel};
use crate::error::{Error, Result};
use crate::schema::Table;
use crate::stages::features::Manifest;
use crate::stages::features::ledger::{Spill, Spills};

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
    /// The parts layout's Hive partition keys (`<key>=<value>`
    /// directories, as Spark's `partitionBy` and pyarrow's datasets write
    /// them), outermost first; empty when the parts sit in the directory.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partition_keys: Vec<String>,
    /// Each file's partition values, in the keys' order (decoded; `None`
    /// for Hive's null marker).
    #[serde(skip)]
    pub partition_values: Vec<Vec<Option<String>>>,
}

/// Hive's directory name for a null partition value.
const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// Deepest nesting of partition directories read.
const MAX_PARTITION_DEPTH: usize = 16;

/// `%XX` escapes decoded, as Spark and pyarrow write partition values;
/// the name as it stands where they do not make UTF-8.
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_string())
}

/// A Hive partition directory's key and value (`None` for the null
/// marker); `None` when the name is not `key=value`.
fn partition_of(name: &str) -> Option<(String, Option<String>)> {
    let (key, value) = name.split_once('=')?;
    if key.is_empty() {
        return None;
    }
    let value = (value != HIVE_NULL).then(|| unescape(value));
    Some((unescape(key), value))
}

/// A part file and its partition values, in the keys' order.
type PartFile = (PathBuf, Vec<Option<String>>);

/// The part files under `root` with their partition values: files in the
/// directory itself, or under `key=value` directories, every file at the
/// same keys. Names starting with `_` or `.` are skipped (Spark's
/// `_SUCCESS`, `_temporary/`, `.crc` files, staging directories), as is
/// any `.crc` file.
fn part_files(table: Table, root: &Path) -> Result<(Vec<String>, Vec<PartFile>)> {
    let bad = |path: &Path, reason: String| Error::BadFile {
        table: table.name().into(),
        path: path.to_path_buf(),
        reason,
    };
    // Each file with its partitions' keys and values.
    type Keyed = (PathBuf, Vec<(String, Option<String>)>);
    let mut found: Vec<Keyed> = Vec::new();
    let mut dirs = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, keys)) = dirs.pop() {
        for entry in fs::read_dir(&dir).map_err(Error::io("list", &dir))? {
            let path = entry.map_err(Error::io("list", &dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('_') || name.starts_with('.') || name.ends_with(".crc") {
                continue;
            }
            if path.is_dir() {
                let Some(partition) = partition_of(name) else {
                    return Err(bad(
                        &path,
                        "a directory among the parts that is not a Hive partition (`key=value`): \
                         a table's directory holds its part files, or partition directories of them"
                            .into(),
                    ));
                };
                if keys.len() >= MAX_PARTITION_DEPTH {
                    return Err(bad(
                        &path,
                        format!("partition directories nested deeper than {MAX_PARTITION_DEPTH}"),
                    ));
                }
                let mut keys = keys.clone();
                keys.push(partition);
                dirs.push((path, keys));
            } else if path.is_file() {
                found.push((path, keys.clone()));
            }
        }
    }
    found.sort();
    let Some((first, first_keys)) = found.first() else {
        return Err(bad(root, "the directory holds no part files".into()));
    };
    let names = |keys: &[(String, Option<String>)]| -> Vec<String> {
        keys.iter().map(|(k, _)| k.clone()).collect()
    };
    let keys = names(first_keys);
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].contains(k) {
            return Err(bad(
                first,
                format!("the partition key `{k}` appears twice in its path"),
            ));
        }
    }
    for (path, other) in &found {
        if names(other) != keys {
            return Err(bad(
                root,
                format!(
                    "its part files sit under different partition keys: {} under [{}], {} under [{}]",
                    first.display(),
                    keys.join(", "),
                    path.display(),
                    names(other).join(", ")
                ),
            ));
        }
    }
    Ok((
        keys,
        found
            .into_iter()
            .map(|(p, k)| (p, k.into_iter().map(|(_, v)| v).collect()))
            .collect(),
    ))
}

/// Whether a number's text has a zero before another digit (`007`,
/// `-01.5`), which reading it as a number would lose.
fn leading_zero(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v).as_bytes();
    digits.len() > 1 && digits[0] == b'0' && digits[1].is_ascii_digit()
}

/// The type of a partition column, from its values as Spark infers it:
/// integers (without a leading zero, which would be lost), then decimal
/// numbers, dates (`YYYY-MM-DD`), timestamps (`YYYY-MM-DD HH:MM:SS`),
/// else text; the null type when every value is null.
fn partition_dtype<'a>(values: impl Iterator<Item = Option<&'a str>> + Clone) -> DataType {
    let present = values.flatten();
    let all = |f: &dyn Fn(&str) -> bool| present.clone().all(f);
    if present.clone().next().is_none() {
        DataType::Null
    } else if all(&|v| v.parse::<i64>().is_ok() && !leading_zero(v)) {
        DataType::Int64
    } else if all(&|v| v.parse::<f64>().is_ok_and(f64::is_finite) && !leading_zero(v)) {
        DataType::Float64
    } else if all(&|v| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()) {
        DataType::Date
    } else if all(&|v| chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f").is_ok()) {
        DataType::Datetime(TimeUnit::Microseconds, None)
    } else {
        DataType::String
    }
}

impl TableSource {
    /// The partition columns and their types (none outside the parts
    /// layout's partition directories).
    pub fn partition_schema(&self) -> Vec<(String, DataType)> {
        self.partition_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let values = self.partition_values.iter().map(move |v| v[i].as_deref());
                (k.clone(), partition_dtype(values))
            })
            .collect()
    }
}

/// A partition value as a literal of its column's type (see
/// [`partition_dtype`], which accepted it).
fn partition_literal(value: Option<&str>, dtype: &DataType) -> Expr {
    let Some(v) = value else {
        return lit(NULL).cast(dtype.clone());
    };
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
    let parsed = match dtype {
        DataType::Int64 => v.parse::<i64>().ok().map(lit),
        DataType::Float64 => v.parse::<f64>().ok().map(lit),
        DataType::Date => chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .ok()
            .map(|d| lit((d - epoch).num_days() as i32)),
        DataType::Datetime(..) => chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .map(|t| lit(t.and_utc().timestamp_micros())),
        _ => None,
    };
    parsed
        .unwrap_or_else(|| lit(v.to_string()))
        .cast(dtype.clone())
}

/// Finds `table` under `dir`: `<table>.parquet`, or a directory of parts
/// named `<table>/` or `<table>.parquet/`. `Ok(None)` when none is present.
pub fn locate(dir: &Path, table: Table) -> Result<Option<TableSource>> {
    let file = dir.join(format!("{}.parquet", table.name()));
    // Spark and friends write a table as a directory `<table>.parquet/`
    // of part files: the parts layout under that name.
    let parts = if file.is_dir() {
        if dir.join(table.name()).is_dir() {
            return Err(Error::BadFile {
                table: table.name().into(),
                path: dir.to_path_buf(),
                reason: format!(
                    "both {}/ and {}/ exist; keep one layout",
                    file.display(),
                    dir.join(table.name()).display()
                ),
            });
        }
        file.clone()
    } else {
        dir.join(table.name())
    };
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
            partition_keys: Vec::new(),
            partition_values: Vec::new(),
        })),
        (false, true) => {
            let (partition_keys, found) = part_files(table, &parts)?;
            let (files, partition_values) = found.into_iter().unzip();
            Ok(Some(TableSource {
                table,
                layout: Layout::Parts,
                path: parts,
                files,
                partition_keys,
                partition_values,
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
    // A damaged footer can make polars' metadata reader panic (a
    // statistics field of the wrong type, seen by the random-damage test):
    // an error naming the file instead.
    let footer = std::panic::catch_unwind(move || {
        let mut reader = ParquetReader::new(f);
        let schema = reader.schema()?;
        let rows = reader.num_rows()?;
        Ok::<_, PolarsError>((schema, rows))
    });
    let (schema, rows) = match footer {
        Ok(read) => read.map_err(|e| bad(format!("unreadable footer: {e}")))?,
        Err(panic) => {
            return Err(bad(format!(
                "unreadable footer (polars failed reading it: {}): a damaged Parquet footer?",
                crate::stages::panic_text(panic.as_ref())
            )));
        }
    };
    // A time zone polars does not know would make the conversion below
    // panic: name the column instead.
    for (name, field) in schema.iter() {
        if let ArrowDataType::Timestamp(_, Some(tz)) = field.dtype()
            && let Err(e) = TimeZone::opt_try_new(Some(tz.clone()))
        {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or_default().to_string();
            return Err(bad(format!(
                "column `{name}` is a timestamp in the time zone `{tz}`, which is not in the time zone database ({first})"
            )));
        }
    }
    // Any other type polars cannot hold: an error naming the file, not a
    // panic.
    let converted = std::panic::catch_unwind(|| Schema::from_arrow_schema(&schema));
    let schema = converted.map_err(|panic| {
        let what = crate::stages::panic_text(panic.as_ref());
        let columns: Vec<String> = schema
            .iter()
            .map(|(n, f)| format!("{n}: {:?}", f.dtype()))
            .collect();
        bad(format!(
            "a column type winback cannot read ({}); columns: {}",
            what.lines().next().unwrap_or("unsupported type"),
            columns.join(", ")
        ))
    })?;
    Ok((schema, rows))
}

/// Polars' scan options for winback's files. Hive partitions are never
/// read from the path: polars' default finds `key=value` directories
/// anywhere in it, so that a data directory under `/lake/month=2025-12-01/`
/// had every bill's `month` replaced by that date. A table's own
/// partition directories are read by [`scan`].
fn scan_args() -> ScanArgsParquet {
    ScanArgsParquet {
        allow_missing_columns: false,
        hive_options: polars::io::HiveOptions::new_disabled(),
        ..Default::default()
    }
}

/// A lazy scan of files, in the order given.
fn scan_files(files: &[PathBuf], what: &Path) -> Result<LazyFrame> {
    let paths: Vec<PlRefPath> = files
        .iter()
        .map(|p| PlRefPath::from(p.to_string_lossy().as_ref()))
        .collect();
    LazyFrame::scan_parquet_files(paths.into_iter().collect(), scan_args())
        .map_err(Error::polars(format!("scan {}", what.display())))
}

/// A lazy scan over a table's files (all parts, in name order), with the
/// partition directories' values as columns, after the files' own.
pub fn scan(source: &TableSource) -> Result<LazyFrame> {
    if source.partition_keys.is_empty() {
        return scan_files(&source.files, &source.path);
    }
    let schema = source.partition_schema();
    let mut scans = Vec::new();
    let mut start = 0;
    // Files of one partition are next to each other in name order.
    while start < source.files.len() {
        let values = &source.partition_values[start];
        let end = start
            + source.partition_values[start..]
                .iter()
                .take_while(|v| *v == values)
                .count();
        let columns: Vec<Expr> = schema
            .iter()
            .zip(values)
            .map(|((key, dtype), value)| {
                partition_literal(value.as_deref(), dtype).alias(key.as_str())
            })
            .collect();
        scans.push(scan_files(&source.files[start..end], &source.path)?.with_columns(columns));
        start = end;
    }
    concat(scans, UnionArgs::default())
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

/// Writes to `path` atomically (temporary file, fsync, rename), through a
/// buffer: serde's JSON and Parquet's page headers and footer come in
/// writes of a few bytes each, and a system call per write made train's
/// last step at 1M (a 3.3 MB model among its files) take about 2 s
/// against 0.4 s. Writes longer than the buffer go straight to the file.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
    }
    let tmp = temp_beside(path);
    let result = (|| {
        let f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
        let mut f = BufWriter::with_capacity(1 << 20, f);
        write(&mut f)?;
        let f = f
            .into_inner()
            .map_err(|e| Error::io("write", &tmp)(e.into_error()))?;
        f.sync_all().map_err(Error::io("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(Error::io("rename into place", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a frame as Parquet (LZ4, the raw block format of Parquet's
/// `LZ4_RAW`), atomically. LZ4 compresses several times faster than the
/// zstd polars writes by default, for files somewhat larger: the features
/// stage's outputs (millions of snapshot rows a night) are written and read
/// back once, and zstd's compression was the largest single cost of
/// writing them.
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<()> {
    write_parquet_with(path, df, &[])
}

/// Writes a frame as Parquet with key-value metadata, atomically.
pub fn write_parquet_with(
    path: &Path,
    df: &mut DataFrame,
    metadata: &[(String, String)],
) -> Result<()> {
    let kv = (!metadata.is_empty())
        .then(|| polars::io::parquet::write::KeyValueMetadata::from_static(metadata.to_vec()));
    write_atomic(path, |f| {
        ParquetWriter::new(f)
            .with_compression(ParquetCompression::Lz4Raw)
            .with_key_value_metadata(kv)
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
    metadata: Vec<(String, String)>,
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
            metadata: Vec::new(),
        })
    }

    /// Where to write now.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Where the directory goes on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Sends the directory to `target` on commit instead (a night's
    /// folder, named once its as-of date is known).
    pub fn retarget(&mut self, target: &Path) {
        self.target = target.to_path_buf();
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
        // Where the system can, the two directories trade places in one
        // step (renameat2 with RENAME_EXCHANGE): a reader sees the old
        // folder or the new, never none.
        if had_old
            && rustix::fs::renameat_with(
                rustix::fs::CWD,
                &self.staging,
                rustix::fs::CWD,
                &self.target,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .is_ok()
        {
            self.committed = true;
            fs::remove_dir_all(&self.staging)
                .map_err(Error::io("remove previous", &self.staging))?;
            return Ok(self.target.clone());
        }
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

/// A directory of scratch files, a stage's [`Spill`] (a file per
/// stream), removed with it.
pub struct ScratchDir {
    path: PathBuf,
    files: Vec<Option<File>>,
}

impl ScratchDir {
    /// A new directory `.<name>-<process>-<n>` in `parent`.
    pub fn new(parent: &Path, name: &str) -> Result<ScratchDir> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = parent.join(format!(".{name}-{}-{n}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path).map_err(Error::io("remove stale", &path))?;
        }
        fs::create_dir_all(&path).map_err(Error::io("create directory", &path))?;
        Ok(ScratchDir {
            path,
            files: Vec::new(),
        })
    }

    /// Stream `i`'s file.
    fn file(&self, i: usize) -> PathBuf {
        self.path.join(format!("stream-{i:05}.bin"))
    }
}

impl Spill for ScratchDir {
    fn append(&mut self, i: usize, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        if self.files.len() <= i {
            self.files.resize_with(i + 1, || None);
        }
        let path = self.file(i);
        if self.files[i].is_none() {
            self.files[i] = Some(File::create(&path).map_err(Error::io("create", &path))?);
        }
        self.files[i]
            .as_mut()
            .expect("created above")
            .write_all(bytes)
            .map_err(Error::io("write", &path))
    }

    fn read(&mut self, i: usize, each: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        use std::io::Read;
        if self.files.get(i).is_none_or(|f| f.is_none()) {
            return Ok(());
        }
        let path = self.file(i);
        let mut f = File::open(&path).map_err(Error::io("open", &path))?;
        let mut buffer = vec![0u8; 1 << 22];
        loop {
            let n = f.read(&mut buffer).map_err(Error::io("read", &path))?;
            if n == 0 {
                return Ok(());
            }
            each(&buffer[..n])?;
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        self.files.clear();
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Spills to a new [`ScratchDir`] in `parent` each.
pub fn spill_in(parent: &Path) -> Spills {
    let parent = parent.to_path_buf();
    Arc::new(move || Ok(Box::new(ScratchDir::new(&parent, "winback-bills")?) as Box<dyn Spill>))
}

/// One Parquet file written a row group at a time (bounded memory).
pub struct ParquetBatches {
    path: PathBuf,
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
    /// LZ4 ([`write_parquet`]'s), else polars' default codec.
    lz4: bool,
    metadata: Vec<(String, String)>,
    /// The first batch's schema, which every later batch is given.
    schema: Option<Schema>,
    /// Whether a row was written.
    rows: bool,
}

impl ParquetBatches {
    /// Opens `path` for writing; the schema comes from the first batch.
    pub fn new(path: PathBuf) -> Self {
        ParquetBatches {
            path,
            writer: None,
            lz4: false,
            metadata: Vec::new(),
            schema: None,
            rows: false,
        }
    }

    /// As [`write_parquet_with`] writes: LZ4, with key-value metadata.
    pub fn lz4(path: PathBuf, metadata: &[(String, String)]) -> Self {
        ParquetBatches {
            lz4: true,
            metadata: metadata.to_vec(),
            ..ParquetBatches::new(path)
        }
    }

    /// Appends `df` as one or more row groups (none when it has no row).
    /// Its columns must be the first batch's, by name and in order; a
    /// column of another type is cast to the first batch's.
    pub fn write(&mut self, df: &DataFrame) -> Result<()> {
        let ctx = || format!("write {}", self.path.display());
        let cast;
        let df = match &self.schema {
            None => {
                if let Some(parent) = self.path.parent() {
                    fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
                }
                let f = File::create(&self.path).map_err(Error::io("create", &self.path))?;
                let kv = (!self.metadata.is_empty()).then(|| {
                    polars::io::parquet::write::KeyValueMetadata::from_static(self.metadata.clone())
                });
                let mut w = ParquetWriter::new(f).with_key_value_metadata(kv);
                if self.lz4 {
                    w = w.with_compression(ParquetCompression::Lz4Raw);
                }
                let schema = df.schema().as_ref().clone();
                self.writer = Some(w.batched(&schema).map_err(Error::polars(ctx()))?);
                self.schema = Some(schema);
                df
            }
            Some(schema) => {
                let names: Vec<&str> = schema.iter_names().map(|n| n.as_str()).collect();
                let got: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
                if names != got {
                    return Err(Error::Data {
                        table: self.path.display().to_string(),
                        message: format!(
                            "a batch's columns ({}) are not the first batch's ({})",
                            got.join(", "),
                            names.join(", ")
                        ),
                    });
                }
                if df.schema().as_ref() == schema {
                    df
                } else {
                    let columns = schema
                        .iter()
                        .map(|(name, dtype)| {
                            df.column(name)
                                .and_then(|c| c.cast(dtype))
                                .map_err(Error::polars(format!(
                                    "{}: column `{name}` as {dtype}",
                                    ctx()
                                )))
                        })
                        .collect::<Result<Vec<Column>>>()?;
                    cast = DataFrame::new(df.height(), columns).map_err(Error::polars(ctx()))?;
                    &cast
                }
            }
        };
        if df.height() == 0 {
            return Ok(());
        }
        self.rows = true;
        self.writer
            .as_mut()
            .expect("opened above")
            .write_batch(df)
            .map_err(Error::polars(ctx()))
    }

    /// Writes the footer. `empty` gives the schema when nothing was written.
    pub fn finish(mut self, empty: &DataFrame) -> Result<()> {
        if self.schema.is_none() {
            self.write(empty)?;
        }
        let ctx = format!("write {}", self.path.display());
        let mut writer = self.writer.take().expect("opened");
        if !self.rows {
            // A file of no row group: its schema still written.
            let empty = DataFrame::empty_with_schema(self.schema.as_ref().expect("opened"));
            writer
                .write_batch(&empty)
                .map_err(Error::polars(ctx.clone()))?;
        }
        writer.finish().map_err(Error::polars(ctx))?;
        Ok(())
    }
}

/// `base.join(rel)` (a path in a config file, relative to the file's
/// directory) with `.` and `name/..` removed lexically, so that
/// messages show `data/demo`, not `configs/../data/demo`.
pub fn relative_to(base: &Path, rel: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// A file's text.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    fs::read_to_string(path)
}

/// A file's bytes.
pub fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    fs::read(path)
}

/// A stage's output folder under the output directory, named as the
/// stage (and its command and config section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `validate/`: `report.json`, `rejected/<table>.parquet`.
    Validate,
    /// `features/`: the frames of [`FeatureSet`], `manifest.json`,
    /// `summary.json`.
    Features,
    /// `score/`: `churn_scores.parquet`, `return_scores.parquet`,
    /// `summary.json`.
    Score,
    /// `simulate/`: `arm_summary`, `target_list`, `policy_evaluation`
    /// (Parquet and CSV), `target_list.xlsx`, `summary.json`.
    Simulate,
    /// `report/`: `index.html` and the CSV data of each chart.
    Report,
}

impl Output {
    /// The folder's name.
    pub fn name(self) -> &'static str {
        match self {
            Output::Validate => "validate",
            Output::Features => "features",
            Output::Score => "score",
            Output::Simulate => "simulate",
            Output::Report => "report",
        }
    }
}

/// The frames the features stage writes and later stages read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FeatureSet {
    /// `lapsed.parquet`: one row per defection.
    Lapsed,
    /// `active.parquet`: the subscribers active at the as-of date.
    Active,
    /// `offers.parquet`: win-back offers with their labels.
    Offers,
    /// `second_lifetime.parquet`: returns with their durations.
    SecondLifetime,
    /// `churn_snapshots/`: one part per snapshot date.
    ChurnSnapshots,
}

impl FeatureSet {
    /// The dataset's name (file stem or folder).
    pub fn name(self) -> &'static str {
        match self {
            FeatureSet::Lapsed => "lapsed",
            FeatureSet::Active => "active",
            FeatureSet::Offers => "offers",
            FeatureSet::SecondLifetime => "second_lifetime",
            FeatureSet::ChurnSnapshots => "churn_snapshots",
        }
    }

    /// The name as listed in summaries (`lapsed.parquet`, `churn_snapshots/`).
    pub fn file_name(self) -> String {
        match self {
            FeatureSet::ChurnSnapshots => format!("{}/", self.name()),
            _ => format!("{}.parquet", self.name()),
        }
    }

    fn path(self, features: &Path) -> PathBuf {
        match self {
            FeatureSet::ChurnSnapshots => features.join(self.name()),
            _ => features.join(self.file_name()),
        }
    }
}

/// The datasets of one run: the input tables under the data directory,
/// the stages' outputs and the model versions under the output directory.
#[derive(Debug, Clone)]
pub struct Catalog {
    data: PathBuf,
    out: PathBuf,
    metadata: Vec<(String, String)>,
}

const MANIFEST: &str = "manifest.json";
const MODELS: &str = "models";

impl Catalog {
    /// A catalog over `data` (inputs) and `out` (outputs).
    pub fn new(data: &Path, out: &Path) -> Catalog {
        Catalog {
            data: data.to_path_buf(),
            out: out.to_path_buf(),
            metadata: Vec::new(),
        }
    }

    /// The input directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// True when the input directory exists.
    pub fn data_present(&self) -> bool {
        self.data.exists()
    }

    /// An error unless the input directory is a directory.
    pub fn check_data_dir(&self) -> Result<()> {
        if self.data.is_dir() {
            Ok(())
        } else {
            Err(Error::Data {
                table: "input".into(),
                message: format!(
                    "{} {} (--data or data.dir names the directory of the input tables)",
                    self.data.display(),
                    if self.data.exists() {
                        "is not a directory"
                    } else {
                        "does not exist"
                    }
                ),
            })
        }
    }

    /// Finds an input table (see [`locate`]).
    pub fn locate(&self, table: Table) -> Result<Option<TableSource>> {
        locate(&self.data, table)
    }

    /// A stage's output folder.
    pub fn output(&self, output: Output) -> PathBuf {
        self.out.join(output.name())
    }

    /// A file in a stage's output folder.
    pub fn output_file(&self, output: Output, file: &str) -> PathBuf {
        self.output(output).join(file)
    }

    /// Starts writing a stage's output folder (swapped in on commit).
    pub fn stage(&self, output: Output) -> Result<StagedDir> {
        let mut staged = StagedDir::new(&self.output(output))?;
        staged.metadata = self.metadata.clone();
        Ok(staged)
    }

    /// The same catalog, whose staged outputs write `metadata` into every
    /// Parquet file's key-value metadata (as-of date, model version, config
    /// hash, code version, run id: what any Parquet reader shows).
    pub fn with_metadata(mut self, metadata: Vec<(String, String)>) -> Catalog {
        self.metadata = metadata;
        self
    }

    /// True when a features stage's output is present.
    pub fn features_present(&self) -> bool {
        self.output(Output::Features).join(MANIFEST).exists()
    }

    /// The feature manifest of the features stage's output.
    pub fn read_manifest(&self) -> Result<Manifest> {
        read_json(&self.output(Output::Features).join(MANIFEST))
    }

    /// A frame of the features stage's output (empty when a part folder
    /// holds no part).
    pub fn read_features(&self, set: FeatureSet) -> Result<DataFrame> {
        read_parquet(&set.path(&self.output(Output::Features)))
    }

    /// A frame of the features stage's output, `None` when absent.
    pub fn read_features_if_present(&self, set: FeatureSet) -> Result<Option<DataFrame>> {
        let path = set.path(&self.output(Output::Features));
        if path.exists() {
            read_parquet(&path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The model versions, oldest first (`v0001`, `v0002`, ...): the
    /// directories that hold files (an empty one is a version being
    /// trained, or whose training was killed).
    pub fn model_versions(&self) -> Vec<(u32, PathBuf)> {
        let dir = self.out.join(MODELS);
        let mut v: Vec<(u32, PathBuf)> = fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let n = name.strip_prefix('v')?.parse::<u32>().ok()?;
                let has_files = fs::read_dir(e.path()).ok()?.next().is_some();
                (e.path().is_dir() && has_files).then(|| (n, e.path()))
            })
            .collect();
        v.sort();
        v
    }

    /// The version directory `path` names, when it holds files.
    pub fn existing_version(&self, path: &Path) -> Option<PathBuf> {
        fs::read_dir(path)
            .ok()?
            .next()
            .is_some()
            .then(|| path.to_path_buf())
    }

    /// `explicit`, else the production version (`models/production`),
    /// else the newest model version.
    pub fn model_version(&self, explicit: Option<&Path>) -> Result<PathBuf> {
        if explicit.is_none()
            && let Some(p) = self.production_version()
        {
            return Ok(p);
        }
        match explicit {
            Some(d) => Ok(d.to_path_buf()),
            None => self
                .model_versions()
                .pop()
                .map(|(_, p)| p)
                .ok_or_else(|| Error::Model {
                    path: self.out.join(MODELS),
                    message: "no trained model version here (run `winback train` first)".into(),
                }),
        }
    }

    /// Starts writing the next model version (one past the newest).
    ///
    /// The version's directory is reserved first by creating it
    /// exclusively (an empty directory, which [`Catalog::model_versions`]
    /// does not list): two trainings at once take two numbers, and neither
    /// commit replaces the other's version.
    pub fn stage_model_version(&self) -> Result<StagedDir> {
        let dir = self.out.join(MODELS);
        fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        let mut next = fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_prefix('v')?.parse::<u32>().ok()
            })
            .max()
            .map(|n| n + 1)
            .unwrap_or(1);
        loop {
            let target = dir.join(format!("v{next:04}"));
            match fs::create_dir(&target) {
                Ok(()) => return StagedDir::new(&target),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => next += 1,
                Err(e) => return Err(Error::io("reserve model version", &target)(e)),
            }
        }
    }
}

/// Whether a version directory holds a model of `kind`.
pub fn has_model(version: &Path, kind: ModelKind) -> bool {
    model_file(version, kind).is_file()
}

/// A model's file in a version directory.
pub fn model_file(version: &Path, kind: ModelKind) -> PathBuf {
    version.join(format!("{}.json", kind.name()))
}

fn read_model<T: serde::de::DeserializeOwned + std::ops::Deref<Target = crate::artifact::Model>>(
    version: &Path,
    kind: ModelKind,
) -> Result<Option<T>> {
    let path = model_file(version, kind);
    if !path.exists() {
        return Ok(None);
    }
    let text = fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    let m: T = serde_json::from_str(&text).map_err(|e| Error::Model {
        path: path.clone(),
        message: format!("not a winback {kind} model: {e}"),
    })?;
    m.check_format(&path)?;
    Ok(Some(m))
}

/// The models of a version directory (those present; at least one).
pub fn load_models(version: &Path) -> Result<ModelSet> {
    if !version.is_dir() {
        return Err(Error::Model {
            path: version.to_path_buf(),
            message: "no such model directory".into(),
        });
    }
    let set = ModelSet {
        return_model: read_model::<ReturnModel>(version, ModelKind::Return)?,
        churn: read_model::<ChurnModel>(version, ModelKind::Churn)?,
        second_lifetime: read_model::<SecondLifetimeModel>(version, ModelKind::SecondLifetime)?,
    };
    if set.is_empty() {
        return Err(Error::Model {
            path: version.to_path_buf(),
            message: "holds no model (return.json, churn.json, second_lifetime.json)".into(),
        });
    }
    Ok(set)
}

/// Writes each model of `set` as `<kind>.json` in a staged version.
pub fn write_models(staged: &StagedDir, set: &ModelSet) -> Result<()> {
    if let Some(m) = &set.return_model {
        write_json(&model_file(staged.path(), ModelKind::Return), m)?;
    }
    if let Some(m) = &set.churn {
        write_json(&model_file(staged.path(), ModelKind::Churn), m)?;
    }
    if let Some(m) = &set.second_lifetime {
        write_json(&model_file(staged.path(), ModelKind::SecondLifetime), m)?;
    }
    Ok(())
}

/// A file of a model version (`evaluation.json`).
pub fn version_file(version: &Path, file: &str) -> PathBuf {
    version.join(file)
}

/// Reads a JSON file into `T`, or `None` when the file is absent.
pub fn read_json_if_present<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// Reads a Parquet file, or `None` when it is absent.
pub fn read_parquet_if_present(path: &Path) -> Result<Option<DataFrame>> {
    if path.exists() {
        read_parquet(path).map(Some)
    } else {
        Ok(None)
    }
}

/// Reads a JSON file into `T`.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(Error::io("read", path))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a Parquet file or a directory of parts (empty when it has none).
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = fs::read_dir(path)
            .map_err(Error::io("read directory", path))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Ok(DataFrame::empty());
    }
    scan_files(&files, path)?
        .collect()
        .map_err(Error::polars(format!("read {}", path.display())))
}

impl StagedDir {
    /// Writes `<name>.parquet`.
    pub fn write_parquet(&self, name: &str, df: &mut DataFrame) -> Result<()> {
        write_parquet_with(
            &self.staging.join(format!("{name}.parquet")),
            df,
            &self.metadata,
        )
    }

    /// Writes `<name>.csv`.
    pub fn write_csv(&self, name: &str, df: &mut DataFrame) -> Result<()> {
        write_csv(&self.staging.join(format!("{name}.csv")), df)
    }

    /// Writes `<name>.json`.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        write_json(&self.staging.join(format!("{name}.json")), value)
    }

    /// Writes a binary file `file` (its full name).
    pub fn write_bytes(&self, file: &str, bytes: &[u8]) -> Result<()> {
        let path = self.staging.join(file);
        write_atomic(&path, |f| {
            f.write_all(bytes).map_err(Error::io("write", path.clone()))
        })
    }

    /// Writes a text file `file` (its full name).
    pub fn write_text(&self, file: &str, text: &str) -> Result<()> {
        let path = self.staging.join(file);
        write_atomic(&path, |f| {
            f.write_all(text.as_bytes())
                .map_err(Error::io("write", path.clone()))
        })
    }

    /// Writes part `i` of the part folder `set` (`<set>/part-00000.parquet`).
    pub fn write_part(&self, set: FeatureSet, i: usize, df: &mut DataFrame) -> Result<()> {
        write_parquet(
            &self
                .staging
                .join(set.name())
                .join(format!("part-{i:05}.parquet")),
            df,
        )
    }

    /// Writes a table's rejected rows (`rejected/<table>.parquet`).
    pub fn write_rejected(&self, table: Table, df: &mut DataFrame) -> Result<()> {
        write_parquet(
            &self
                .staging
                .join("rejected")
                .join(format!("{}.parquet", table.name())),
            df,
        )
    }

    /// A batched Parquet writer of `<name>.parquet` in this directory.
    pub fn batches(&self, name: &str) -> ParquetBatches {
        ParquetBatches::new(self.staging.join(format!("{name}.parquet")))
    }

    /// A batched Parquet writer of `<name>.parquet` as
    /// [`StagedDir::write_parquet`] writes it (LZ4, the directory's
    /// metadata).
    pub fn batches_lz4(&self, name: &str) -> ParquetBatches {
        ParquetBatches::lz4(self.staging.join(format!("{name}.parquet")), &self.metadata)
    }

    /// A batched Parquet writer of part `i` of the part folder `set`, as
    /// [`StagedDir::write_part`] writes it.
    pub fn part_batches(&self, set: FeatureSet, i: usize) -> ParquetBatches {
        ParquetBatches::lz4(
            self.staging
                .join(set.name())
                .join(format!("part-{i:05}.parquet")),
            &[],
        )
    }
}

// ------------------------------------------------------------ locks

/// A lock on an output directory (`<out>/.winback.lock`), released when
/// dropped. The file holds the holder's process id, its start time (from
/// `/proc`, so that a recycled process id is not taken for the holder) and
/// command; a lock whose holder is gone (killed) is taken over.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat`,
/// field 22), or `None` when it does not exist.
fn process_start(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    after.split_whitespace().nth(19).map(str::to_string)
}

const LOCK: &str = ".winback.lock";

/// This process's peak resident memory so far in MiB (`VmHWM` of
/// `/proc/self/status`), or `None` where there is no such file.
pub fn peak_rss_mib() -> Option<f64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

impl Catalog {
    /// Writes `<out>/timings.json` (a `run`'s seconds and memory per
    /// stage), atomically.
    pub fn write_timings<T: Serialize>(&self, value: &T) -> Result<()> {
        fs::create_dir_all(&self.out).map_err(Error::io("create directory", &self.out))?;
        write_json(&self.out.join("timings.json"), value)
    }
}

impl Catalog {
    /// Takes the output directory's lock for `command`; with `wait`, waits
    /// for another job's lock to go, else fails with [`Error::Busy`].
    pub fn lock(&self, command: &str, wait: bool) -> Result<Lock> {
        fs::create_dir_all(&self.out).map_err(Error::io("create directory", &self.out))?;
        let path = self.out.join(LOCK);
        let me = std::process::id();
        let text = format!("{me} {} {command}\n", process_start(me).unwrap_or_default());
        // Written beside it, then linked into place: the lock appears
        // with its content or not at all.
        let tmp = temp_beside(&path);
        if let Err(e) = fs::write(&tmp, &text) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("write", &tmp)(e));
        }
        let proc_fs = Path::new("/proc/self/stat").is_file();
        let result = loop {
            match fs::hard_link(&tmp, &path) {
                Ok(()) => break Ok(Lock { path: path.clone() }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => break Err(Error::io("create lock", &path)(e)),
            }
            let held = fs::read_to_string(&path).unwrap_or_default();
            let mut parts = held.split_whitespace();
            let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
            let started = parts.next().unwrap_or_default().to_string();
            let holder_command = parts.next().unwrap_or("?").to_string();
            let alive = match pid {
                _ if !proc_fs => true,
                Some(p) => process_start(p).is_some_and(|s| s == started),
                None => false,
            };
            if !alive {
                // The holder is gone: take the lock over, unless another
                // job did in the meantime (then its content differs).
                let aside = path.with_file_name(format!("{LOCK}.stale-{me}"));
                if fs::rename(&path, &aside).is_ok() {
                    if fs::read_to_string(&aside).unwrap_or_default() != held {
                        let _ = fs::rename(&aside, &path);
                    } else {
                        let _ = fs::remove_file(&aside);
                    }
                }
                continue;
            }
            if wait {
                std::thread::sleep(std::time::Duration::from_millis(500));
                continue;
            }
            break Err(Error::Busy {
                path: path.clone(),
                holder: format!(
                    "`winback {holder_command}`, process {}",
                    pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
                ),
            });
        };
        let _ = fs::remove_file(&tmp);
        result
    }
}

// ------------------------------------------------------------ nightly runs

const RUNS: &str = "runs";
const LATEST: &str = "latest";

/// Whether `name` is a night's folder name (an ISO date).
fn is_run_name(name: &str) -> bool {
    chrono::NaiveDate::parse_from_str(name, "%Y-%m-%d").is_ok()
}

impl Catalog {
    /// `<out>/runs/`.
    pub fn runs_dir(&self) -> PathBuf {
        self.out.join(RUNS)
    }

    /// `<out>/runs/<name>/`.
    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.runs_dir().join(name)
    }

    /// A file of a night's folder.
    pub fn run_file(&self, name: &str, file: &str) -> PathBuf {
        self.run_dir(name).join(file)
    }

    /// Starts staging a night under `runs/` (its target, the as-of date,
    /// is set with [`StagedDir::retarget`] once known).
    pub fn stage_run(&self) -> Result<StagedDir> {
        StagedDir::new(&self.run_dir("pending"))
    }

    /// The nights, oldest first: (as-of date, folder).
    pub fn list_runs(&self) -> Vec<(String, PathBuf)> {
        let mut v: Vec<(String, PathBuf)> = fs::read_dir(self.runs_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                (is_run_name(&name) && e.path().is_dir() && !e.path().is_symlink())
                    .then(|| (name, e.path()))
            })
            .collect();
        v.sort();
        v
    }

    /// The night `runs/latest` points at.
    pub fn latest_run(&self) -> Option<String> {
        fs::read_link(self.runs_dir().join(LATEST))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// Points `runs/latest` at `name`, atomically (a new link renamed over
    /// the old one): a reader sees the old night or the new, never none.
    pub fn set_latest(&self, name: &str) -> Result<()> {
        let link = self.runs_dir().join(LATEST);
        let tmp = temp_beside(&link);
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp).map_err(Error::io("link", &tmp))?;
        fs::rename(&tmp, &link).map_err(Error::io("rename into place", &link))?;
        if let Ok(dir) = File::open(self.runs_dir()) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Repairs what a killed night left under `runs/` (call holding the
    /// lock): a night moved aside for its replacement and not replaced is
    /// moved back; staging folders and links are removed. Returns what it
    /// did, for the log.
    pub fn recover_runs(&self) -> Result<Vec<String>> {
        let dir = self.runs_dir();
        let mut done = Vec::new();
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let path = entry.path();
            if !name.starts_with('.') {
                continue;
            }
            if let Some((target, _)) = name[1..].split_once(".old-") {
                let back = dir.join(target);
                if back.exists() {
                    fs::remove_dir_all(&path).map_err(Error::io("remove", &path))?;
                    done.push(format!("removed {name}, left by a replaced night"));
                } else {
                    fs::rename(&path, &back).map_err(Error::io("restore", &back))?;
                    done.push(format!("restored {target}, moved aside by a killed run"));
                }
            } else if name.contains(".tmp-") {
                if path.is_dir() && !path.is_symlink() {
                    fs::remove_dir_all(&path).map_err(Error::io("remove", &path))?;
                } else {
                    fs::remove_file(&path).map_err(Error::io("remove", &path))?;
                }
                done.push(format!("removed {name}, left by a killed run"));
            }
        }
        Ok(done)
    }

    /// Removes the oldest nights beyond `keep`, never the one `latest`
    /// points at; returns their names.
    pub fn prune_runs(&self, keep: usize) -> Result<Vec<String>> {
        let latest = self.latest_run();
        let runs = self.list_runs();
        let mut removed = Vec::new();
        let excess = runs.len().saturating_sub(keep);
        for (name, path) in runs.into_iter().take(excess) {
            if Some(&name) == latest.as_ref() {
                continue;
            }
            fs::remove_dir_all(&path).map_err(Error::io("remove", &path))?;
            removed.push(name);
        }
        Ok(removed)
    }
}

// ------------------------------------------------------------ fingerprints

/// What a Parquet file is, read from its footer (no data read): size,
/// modification time, rows, row groups, the writer, the columns.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FileFingerprint {
    /// The file.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Modification time, seconds since the Unix epoch.
    pub modified: u64,
    /// Rows (footer).
    pub rows: i64,
    /// Row groups (footer).
    pub row_groups: usize,
    /// The writing library (footer's `created_by`).
    pub created_by: Option<String>,
    /// Column paths and physical types (footer's schema).
    pub columns: Vec<String>,
}

/// The fingerprints of a table's files, from their Parquet footers (the
/// `parquet` crate's metadata reader).
pub fn fingerprint(source: &TableSource) -> Result<Vec<FileFingerprint>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    source
        .files
        .iter()
        .map(|path| {
            let bad = |reason: String| Error::BadFile {
                table: source.table.name().into(),
                path: path.clone(),
                reason,
            };
            let f = File::open(path).map_err(Error::io("open", path))?;
            let meta = f.metadata().map_err(Error::io("stat", path))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let reader =
                SerializedFileReader::new(f).map_err(|e| bad(format!("unreadable footer: {e}")))?;
            let md = reader.metadata();
            let file = md.file_metadata();
            Ok(FileFingerprint {
                path: path.clone(),
                bytes: meta.len(),
                modified,
                rows: file.num_rows(),
                row_groups: md.num_row_groups(),
                created_by: file.created_by().map(str::to_string),
                columns: file
                    .schema_descr()
                    .columns()
                    .iter()
                    .map(|c| format!("{}: {}", c.path(), c.physical_type()))
                    .collect(),
            })
        })
        .collect()
}

/// The key-value metadata of a Parquet file's footer.
pub fn parquet_metadata(path: &Path) -> Result<Vec<(String, Option<String>)>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let f = File::open(path).map_err(Error::io("open", path))?;
    let reader = SerializedFileReader::new(f).map_err(|e| Error::Model {
        path: path.to_path_buf(),
        message: format!("unreadable Parquet footer: {e}"),
    })?;
    Ok(reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone()))
                .collect()
        })
        .unwrap_or_default())
}

/// Every file of a model version as (name, bytes): the model's fingerprint
/// is their hash.
pub fn version_files(version: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut names: Vec<PathBuf> = fs::read_dir(version)
        .map_err(Error::io("list", version))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).map_err(Error::io("read", &p))?;
            Ok((
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                bytes,
            ))
        })
        .collect()
}

// ------------------------------------------------------------ registry

const PRODUCTION: &str = "production";
const REGISTRY_LOG: &str = "registry.jsonl";

impl Catalog {
    /// `<out>/models/<name>/`.
    pub fn version_dir(&self, name: &str) -> PathBuf {
        self.out.join(MODELS).join(name)
    }

    /// The version `models/production` points at, when it is set and the
    /// version holds files.
    pub fn production_version(&self) -> Option<PathBuf> {
        let link = self.out.join(MODELS).join(PRODUCTION);
        let name = fs::read_link(&link).ok()?;
        let dir = self.out.join(MODELS).join(name);
        self.existing_version(&dir)
    }

    /// Points `models/production` at version `name`, atomically.
    pub fn set_production(&self, name: &str) -> Result<()> {
        let link = self.out.join(MODELS).join(PRODUCTION);
        let tmp = temp_beside(&link);
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp).map_err(Error::io("link", &tmp))?;
        fs::rename(&tmp, &link).map_err(Error::io("rename into place", &link))
    }

    /// Appends one entry (a JSON object) to `models/registry.jsonl`.
    pub fn log_registry(&self, entry: &serde_json::Value) -> Result<()> {
        let path = self.out.join(MODELS).join(REGISTRY_LOG);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        writeln!(f, "{entry}").map_err(Error::io("write", &path))?;
        f.sync_all().map_err(Error::io("sync", &path))
    }

    /// The registry's log, oldest first (unreadable lines skipped).
    pub fn registry_log(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(self.out.join(MODELS).join(REGISTRY_LOG))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> DataFrame {
        df! {
            "subscriber_id" => ["a", "b", "c"],
            "month" => [18_262i32, 18_293, 18_322],
            "revenue" => [1.0, 2.0, 3.0],
        }
        .unwrap()
        .lazy()
        .with_column(col("month").cast(DataType::Date))
        .collect()
        .unwrap()
    }

    #[test]
    fn files_under_a_key_value_path_keep_their_own_columns() {
        // Polars' default reads `key=value` anywhere in a path as a Hive
        // partition: every bill's `month` became the directory's date.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("month=2020-01-01").join("subscriber_id=x");
        let mut df = frame();
        write_parquet(&dir.join("billing.parquet"), &mut df).unwrap();
        let source = locate(&dir, Table::Billing).unwrap().unwrap();
        assert!(source.partition_keys.is_empty());
        let scanned = scan(&source).unwrap().collect().unwrap();
        assert!(scanned.equals(&df), "{scanned}");
        let read = read_parquet(&dir.join("billing.parquet")).unwrap();
        assert!(read.equals(&df), "{read}");
    }

    #[test]
    fn partition_directories_become_typed_columns() {
        let tmp = tempfile::tempdir().unwrap();
        let table = tmp.path().join("billing");
        let rows = frame();
        for (i, dir) in [
            "region=north%2Feast%3A%201/day=2020-01-01",
            "region=__HIVE_DEFAULT_PARTITION__/day=2020-02-01",
            "region=south/day=2020-03-01",
        ]
        .iter()
        .enumerate()
        {
            let mut part = rows.slice(i as i64, 1);
            write_parquet(&table.join(dir).join("part-0.parquet"), &mut part).unwrap();
        }
        fs::create_dir_all(table.join("_temporary/0")).unwrap();
        fs::write(table.join("_temporary/0/junk"), b"x").unwrap();
        fs::write(table.join("_SUCCESS"), b"").unwrap();
        let source = locate(tmp.path(), Table::Billing).unwrap().unwrap();
        assert_eq!(source.partition_keys, ["region", "day"]);
        assert_eq!(
            source.partition_schema(),
            [
                ("region".to_string(), DataType::String),
                ("day".to_string(), DataType::Date)
            ]
        );
        let got = scan(&source).unwrap().collect().unwrap();
        let regions: Vec<Option<&str>> = got
            .column("region")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        // Files in name order: `__HIVE...` sorts before `north...`.
        assert_eq!(regions, [None, Some("north/east: 1"), Some("south")]);
        let days = got.column("day").unwrap().cast(&DataType::String).unwrap();
        let days: Vec<Option<&str>> = days.str().unwrap().iter().collect();
        assert_eq!(
            days,
            [Some("2020-02-01"), Some("2020-01-01"), Some("2020-03-01")]
        );
        assert_eq!(
            got.column("revenue").unwrap().f64().unwrap().get(0),
            Some(2.0)
        );
    }

    #[test]
    fn partition_values_are_typed_as_spark_infers_them() {
        let dtype = |v: &[Option<&str>]| partition_dtype(v.iter().copied());
        assert_eq!(dtype(&[Some("1"), Some("-20"), None]), DataType::Int64);
        assert_eq!(
            dtype(&[Some("007"), Some("12")]),
            DataType::String,
            "leading zeros kept"
        );
        assert_eq!(dtype(&[Some("1.5"), Some("2")]), DataType::Float64);
        assert_eq!(
            dtype(&[Some("0.5"), Some("-0.25"), Some("0")]),
            DataType::Float64
        );
        assert_eq!(dtype(&[Some("0"), Some("-3")]), DataType::Int64);
        assert_eq!(dtype(&[Some("01.5")]), DataType::String);
        assert_eq!(dtype(&[Some("2024-01-01")]), DataType::Date);
        assert_eq!(
            dtype(&[Some("2024-01-01 10:00:00"), Some("2024-01-01 10:00:00.5")]),
            DataType::Datetime(TimeUnit::Microseconds, None)
        );
        assert_eq!(dtype(&[Some("2024-01-01"), Some("x")]), DataType::String);
        assert_eq!(dtype(&[None, None]), DataType::Null);
        assert_eq!(unescape("a%2Fb%3Ac%20%C3%A9"), "a/b:c é");
        assert_eq!(unescape("100%"), "100%");
        assert_eq!(unescape("%zz%4"), "%zz%4");
        assert_eq!(unescape("%FF"), "%FF", "not UTF-8: as it stands");
        assert_eq!(
            partition_of("k=v=w"),
            Some(("k".into(), Some("v=w".into())))
        );
        assert_eq!(partition_of("=v"), None);
        assert_eq!(partition_of("plain"), None);
        assert_eq!(
            partition_of("k=__HIVE_DEFAULT_PARTITION__"),
            Some(("k".into(), None))
        );
    }
}
