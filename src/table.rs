//! The user's own product tables — CSV/TSV, Parquet, JSON lines, Arrow IPC — read with polars
//! in bounded batches and mapped onto the curation's fields (title, description, features,
//! details, price, category), so a shop export curates by the same rules and report as raw Amazon
//! lines (design.md §4).
//!
//! - [`inspect`]: the schema (name, type, nulls, samples) of a table's first rows, the sniffed CSV
//!   dialect and the [`TableMapping::guess`] from column names.
//! - [`TableMapping`]: which columns feed which field; parsed from the CLI's `--map`, saved as JSON.
//! - [`read_source`]: the batch reader the curation driver calls for a [`Source`] with a table spec;
//!   CSV and JSON lines are cut into chunks of whole records here (quote-aware) and each chunk is
//!   parsed by polars, so memory stays bounded whatever the file's size; Parquet is read in row
//!   slices and Arrow IPC memory-mapped and sliced.

use crate::load::{Chunk, LineError, PriceField, RawRecord, Source, SourceData};
pub use crate::mapping::*;
use crate::{Error, Result};
use polars::prelude::*;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The first rows of a table and its schema, for the mapping dialog's live preview.
#[derive(Clone, Debug)]
pub struct TableHead {
    /// The schema.
    pub schema: TableSchema,
    /// The first rows, every column.
    pub frame: DataFrame,
    /// Their row numbers (1-based; CSV/JSON lines: the line each record starts on).
    pub rows: Vec<u64>,
    /// JSON lines: the rows' lines.
    pub raw: Option<Arc<RawLines>>,
}

/// Rows [`inspect`] reads by default.
pub const INSPECT_ROWS: usize = 1000;

/// Reads the first `n_rows` rows of a table: schema with types, null counts and samples, and the
/// rows themselves. `dialect` overrides the sniffed CSV dialect.
pub fn inspect(path: &Path, dialect: Option<CsvDialect>, n_rows: usize) -> Result<TableHead> {
    let kind = TableKind::of(path).ok_or_else(|| {
        Error::InvalidInput(format!(
            "{}: not a table this tool reads (use .csv, .tsv, .parquet, .jsonl, .arrow)",
            path.display()
        ))
    })?;
    let name = file_name(path);
    let dialect = match kind {
        TableKind::Csv => Some(match dialect {
            Some(d) => d,
            None => sniff_file(path)?,
        }),
        _ => None,
    };
    let mut reader = BatchReader::open(path, kind, dialect, None, n_rows.max(1), None)?;
    let (frame, rows, raw, errors, whole_file) = match reader.next_batch()? {
        Some(b) => {
            let whole = reader.next_batch()?.is_none();
            (b.frame, b.rows, b.raw, b.errors, whole)
        }
        None => (DataFrame::empty(), Vec::new(), None, Vec::new(), true),
    };
    let frame = if frame.height() > n_rows { frame.head(Some(n_rows)) } else { frame };
    let rows: Vec<u64> = rows.into_iter().take(frame.height()).collect();
    // CSV cells are read as text; show the types polars would infer on them.
    let typed = match kind {
        TableKind::Csv => infer_types(&frame),
        _ => frame.clone(),
    };
    let columns = typed
        .get_columns()
        .iter()
        .map(|c| {
            let mut samples = Vec::new();
            for i in 0..c.len() {
                if samples.len() == 5 {
                    break;
                }
                if let Some(t) = cell_text(c, i)
                    && !t.trim().is_empty()
                {
                    samples.push(shorten(&t, 60));
                }
            }
            ColumnInfo { name: c.name().to_string(), dtype: c.dtype().to_string(), nulls: c.null_count(), samples }
        })
        .collect();
    let unreadable = errors.len();
    let first_unreadable = errors.iter().take(3).map(ToString::to_string).collect();
    let schema =
        TableSchema { name, kind, dialect, columns, rows: frame.height(), whole_file, unreadable, first_unreadable };
    Ok(TableHead { schema, frame, rows, raw })
}

fn infer_types(frame: &DataFrame) -> DataFrame {
    let cols: Vec<Column> = frame
        .get_columns()
        .iter()
        .map(|c| {
            for dt in [DataType::Int64, DataType::Float64] {
                if let Ok(cast) = c.strict_cast(&dt) {
                    return cast;
                }
            }
            c.clone()
        })
        .collect();
    DataFrame::new(cols).unwrap_or_else(|_| frame.clone())
}

fn shorten(s: &str, n: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    match one_line.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// A path's file name for messages (the whole path when it has none).
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// The file stem without `.gz` and the extension: the whole-file category a guess falls back to.
pub fn default_category(path: &Path) -> String {
    let name = file_name(path);
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    crate::load::normalize_category(stem)
}

fn sniff_file(path: &Path) -> Result<CsvDialect> {
    let mut sample = Vec::with_capacity(64 << 10);
    open_plain(path)?.take(64 << 10).read_to_end(&mut sample).map_err(|e| Error::io(path, e))?;
    let lower = path.to_string_lossy().to_ascii_lowercase();
    Ok(CsvDialect::sniff(&sample, lower.contains(".tsv") || lower.contains(".tab")))
}

fn open_plain(path: &Path) -> Result<Box<dyn Read + Send>> {
    open_counted(path, None)
}

/// The file's text (gunzipped for `.gz`), its bytes on disk counted into `counter` for progress.
fn open_counted(path: &Path, counter: Option<&Arc<AtomicU64>>) -> Result<Box<dyn Read + Send>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let f: Box<dyn Read + Send> = match counter {
        Some(c) => Box::new(crate::load::CountingReader { inner: f, counter: c.clone() }),
        None => Box::new(f),
    };
    Ok(if path.to_string_lossy().to_ascii_lowercase().ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        f
    })
}

/// A batch of rows.
struct Batch {
    frame: DataFrame,
    /// Row (CSV, JSON lines: first line) number of each row.
    rows: Vec<u64>,
    /// Records polars could not read, by their row numbers.
    errors: Vec<LineError>,
    /// JSON lines: each row's line, for a details object read exactly as written.
    raw: Option<Arc<RawLines>>,
}

/// The source lines of a batch of JSON-lines rows.
#[derive(Clone, Debug, Default)]
pub struct RawLines {
    buf: Arc<[u8]>,
    spans: Vec<(usize, usize)>,
}

impl RawLines {
    /// Lines `start..start + n` (sharing the bytes).
    fn slice(&self, start: usize, n: usize) -> Self {
        let end = (start + n).min(self.spans.len());
        Self { buf: self.buf.clone(), spans: self.spans[start.min(end)..end].to_vec() }
    }

    /// The value of `key` in line `i` exactly as written (`None` when absent or not an object).
    fn value<'a>(&'a self, i: usize, key: &str) -> Option<&'a serde_json::value::RawValue> {
        let (s, e) = *self.spans.get(i)?;
        let map: std::collections::HashMap<std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue> =
            serde_json::from_slice(&self.buf[s..e]).ok()?;
        map.get(key).copied()
    }
}

/// Bytes of CSV or JSON-lines text per batch handed to polars.
const CHUNK_BYTES: usize = 8 << 20;
/// Rows per Parquet or Arrow slice.
const SLICE_ROWS: usize = 65_536;

enum BatchReader {
    Text(TextChunker),
    Frames {
        name: String,
        path: PathBuf,
        columns: Option<Vec<String>>,
        total: usize,
        next: usize,
        step: usize,
        frame: Option<DataFrame>,
        /// Parquet: the row count at the end of each row group.
        ends: Vec<usize>,
    },
}

/// The cumulative row counts at the end of each row group of a Parquet file.
fn row_group_ends(path: &Path) -> Result<Vec<usize>> {
    use parquet::file::reader::FileReader;
    let mut end = 0usize;
    Ok(crate::items_io::parquet_file(path)?
        .metadata()
        .row_groups()
        .iter()
        .map(|g| {
            end += g.num_rows().max(0) as usize;
            end
        })
        .collect())
}

impl BatchReader {
    fn open(
        path: &Path,
        kind: TableKind,
        dialect: Option<CsvDialect>,
        columns: Option<Vec<String>>,
        max_rows: usize,
        counter: Option<&Arc<AtomicU64>>,
    ) -> Result<Self> {
        let name = file_name(path);
        let perr = |e: PolarsError| Error::InvalidInput(format!("{name}: {e}"));
        Ok(match kind {
            TableKind::Csv | TableKind::JsonLines => Self::Text(TextChunker::new(
                name,
                open_counted(path, counter)?,
                kind,
                dialect.unwrap_or_default(),
                columns,
                max_rows,
            )?),
            TableKind::Parquet => {
                let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                let total = ParquetReader::new(f).num_rows().map_err(perr)?;
                // Slices end on row-group boundaries, so no row group is decoded twice.
                let ends = if max_rows >= SLICE_ROWS { row_group_ends(path)? } else { Vec::new() };
                Self::Frames {
                    name,
                    path: path.to_owned(),
                    columns,
                    total,
                    next: 0,
                    step: max_rows.min(SLICE_ROWS),
                    frame: None,
                    ends,
                }
            }
            TableKind::Arrow => {
                let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                let frame = IpcReader::new(f)
                    .memory_mapped(Some(path.to_owned()))
                    .with_columns(columns.clone())
                    .finish()
                    .map_err(perr)?;
                Self::Frames {
                    name,
                    path: path.to_owned(),
                    columns,
                    total: frame.height(),
                    next: 0,
                    step: max_rows.min(SLICE_ROWS),
                    frame: Some(frame),
                    ends: Vec::new(),
                }
            }
        })
    }

    /// Fraction of the file read so far (for progress of row-sliced kinds).
    fn fraction(&self) -> Option<f64> {
        match self {
            Self::Text(_) => None,
            Self::Frames { total, next, .. } => Some(if *total == 0 { 1.0 } else { *next as f64 / *total as f64 }),
        }
    }

    fn next_batch(&mut self) -> Result<Option<Batch>> {
        match self {
            Self::Text(t) => t.next_batch(),
            Self::Frames { name, path, columns, total, next, step, frame, ends } => {
                if *next >= *total {
                    return Ok(None);
                }
                let target = *next + *step;
                let end = ends.iter().copied().find(|&e| e >= target).unwrap_or(*total);
                let n = if ends.is_empty() { (*step).min(*total - *next) } else { end.min(*total) - *next };
                let df = match frame {
                    Some(f) => f.slice(*next as i64, n),
                    None => {
                        let f = std::fs::File::open(&*path).map_err(|e| Error::io(&*path, e))?;
                        ParquetReader::new(f)
                            .with_columns(columns.clone())
                            .with_slice(Some((*next, n)))
                            .finish()
                            .map_err(|e| Error::InvalidInput(format!("{name}: {e}")))?
                    }
                };
                let rows = (*next as u64 + 1..=(*next + n) as u64).collect();
                *next += n;
                Ok(Some(Batch { frame: df, rows, errors: Vec::new(), raw: None }))
            }
        }
    }
}

/// Cuts CSV or JSON-lines text into chunks of whole records (a newline inside quotes does not end
/// a CSV record), each parsed by polars on its own with the header row in front.
struct TextChunker {
    name: String,
    input: Box<dyn Read + Send>,
    kind: TableKind,
    dialect: CsvDialect,
    columns: Option<Vec<String>>,
    header: Vec<u8>,
    /// Bytes read but not yet handed out (a partial record at the end).
    pending: Vec<u8>,
    /// Line number of `pending`'s first byte.
    line: u64,
    eof: bool,
    max_rows: usize,
    /// Bytes of text per chunk.
    chunk_bytes: usize,
}

impl TextChunker {
    fn new(
        name: String,
        input: Box<dyn Read + Send>,
        kind: TableKind,
        dialect: CsvDialect,
        columns: Option<Vec<String>>,
        max_rows: usize,
    ) -> Result<Self> {
        let mut c = Self {
            name,
            input,
            kind,
            dialect,
            columns,
            header: Vec::new(),
            pending: Vec::new(),
            line: 1,
            eof: false,
            max_rows,
            chunk_bytes: CHUNK_BYTES,
        };
        c.fill(64 << 10)?;
        if c.pending.starts_with(b"\xEF\xBB\xBF") {
            c.pending.drain(..3);
        }
        if kind == TableKind::Csv && dialect.has_header {
            loop {
                let ends = c.record_ends(1);
                if let Some(&end) = ends.first() {
                    c.header = c.pending.drain(..end).collect();
                    c.line += c.header.iter().filter(|&&b| b == b'\n').count() as u64;
                    break;
                }
                if c.eof {
                    c.header = std::mem::take(&mut c.pending);
                    c.header.push(b'\n');
                    break;
                }
                c.fill(c.pending.len() + (1 << 20))?;
            }
        }
        Ok(c)
    }

    /// Reads until `pending` holds at least `want` bytes or the input ends.
    fn fill(&mut self, want: usize) -> Result<()> {
        while !self.eof && self.pending.len() < want {
            let more = (want - self.pending.len()) as u64;
            match (&mut self.input).take(more).read_to_end(&mut self.pending) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::InvalidInput(format!("{}: {e}", self.name))),
            }
        }
        Ok(())
    }

    /// Ends (exclusive, after the newline) of up to `max` whole records in `pending`.
    fn record_ends(&self, max: usize) -> Vec<usize> {
        let quote = if self.kind == TableKind::Csv { self.dialect.quote } else { None };
        let buf = &self.pending;
        let mut ends = Vec::new();
        let mut in_quote = false;
        let mut i = 0;
        while ends.len() < max {
            let next = match quote {
                Some(q) => memchr::memchr2(b'\n', q, &buf[i..]),
                None => memchr::memchr(b'\n', &buf[i..]),
            };
            let Some(off) = next else { break };
            let at = i + off;
            if buf[at] == b'\n' {
                if !in_quote {
                    ends.push(at + 1);
                }
            } else {
                in_quote = !in_quote;
            }
            i = at + 1;
        }
        ends
    }

    fn next_batch(&mut self) -> Result<Option<Batch>> {
        self.fill(self.chunk_bytes)?;
        let mut ends = self.record_ends(self.max_rows);
        if self.eof
            && !self.pending.is_empty()
            && ends.last().copied() != Some(self.pending.len())
            && ends.len() < self.max_rows
        {
            // The last record has no newline.
            self.pending.push(b'\n');
            ends.push(self.pending.len());
        }
        while ends.is_empty() && !self.eof {
            // One record longer than a chunk: read on.
            self.fill(self.pending.len() + self.chunk_bytes)?;
            ends = self.record_ends(self.max_rows);
        }
        if ends.is_empty() {
            if self.pending.is_empty() {
                return Ok(None);
            }
            // Input ended inside quotes: hand the rest over as one record (polars reports it).
            self.pending.push(b'\n');
            ends.push(self.pending.len());
        }
        let cut = *ends.last().expect("a record");
        let chunk: Vec<u8> = self.pending.drain(..cut).collect();
        // Records that are not blank, with their first line numbers.
        let mut spans = Vec::with_capacity(ends.len());
        let (mut start, mut line) = (0usize, self.line);
        for &end in &ends {
            let rec = &chunk[start..end];
            if rec.iter().any(|&b| !b.is_ascii_whitespace()) {
                spans.push((start, end, line));
            }
            line += rec.iter().filter(|&&b| b == b'\n').count() as u64;
            start = end;
        }
        self.line = line;
        if spans.is_empty() {
            return self.next_batch();
        }
        let mut body = Vec::with_capacity(self.header.len() + chunk.len());
        body.extend_from_slice(&self.header);
        let mut rows = Vec::with_capacity(spans.len());
        for &(s, e, l) in &spans {
            body.extend_from_slice(&chunk[s..e]);
            rows.push(l);
        }
        let shared: Arc<[u8]> =
            if self.kind == TableKind::JsonLines { Arc::from(&chunk[..]) } else { Arc::from(&[][..]) };
        let raw_of = |keep: &dyn Fn(usize) -> bool| {
            (self.kind == TableKind::JsonLines).then(|| {
                let spans = spans.iter().enumerate().filter(|(k, _)| keep(*k)).map(|(_, &(s, e, _))| (s, e)).collect();
                Arc::new(RawLines { buf: shared.clone(), spans })
            })
        };
        match self.parse(body) {
            Ok(frame) if frame.height() == rows.len() => {
                let raw = raw_of(&|_| true);
                Ok(Some(Batch { frame, rows, errors: Vec::new(), raw }))
            }
            _ => {
                // Find the records polars refuses by reading them one by one.
                let mut frames = Vec::new();
                let mut good = Vec::new();
                let mut ok = vec![false; spans.len()];
                let mut errors = Vec::new();
                for (k, &(s, e, l)) in spans.iter().enumerate() {
                    let mut one = self.header.clone();
                    one.extend_from_slice(&chunk[s..e]);
                    match self.parse(one) {
                        Ok(f) if f.height() == 1 => {
                            frames.push(f);
                            good.push(l);
                            ok[k] = true;
                        }
                        Ok(f) => errors.push(LineError {
                            file: self.name.clone(),
                            line: l,
                            message: format!("read as {} rows", f.height()),
                        }),
                        Err(e) => errors.push(LineError { file: self.name.clone(), line: l, message: e.to_string() }),
                    }
                }
                let frame = if frames.is_empty() {
                    // No record could be read: the header alone still names the columns.
                    self.parse(self.header.clone()).unwrap_or_default()
                } else {
                    concat_frames(frames).map_err(|e| Error::InvalidInput(format!("{}: {e}", self.name)))?
                };
                let raw = raw_of(&|k| ok[k]);
                Ok(Some(Batch { frame, rows: good, errors, raw }))
            }
        }
    }

    fn parse(&self, body: Vec<u8>) -> PolarsResult<DataFrame> {
        match self.kind {
            TableKind::JsonLines => {
                let df = JsonLineReader::new(Cursor::new(body)).finish()?;
                Ok(match &self.columns {
                    Some(cols) => {
                        let keep: Vec<Column> = cols.iter().filter_map(|c| df.column(c).ok().cloned()).collect();
                        DataFrame::new_with_height(df.height(), keep)?
                    }
                    None => df,
                })
            }
            _ => CsvReadOptions::default()
                .with_has_header(self.dialect.has_header)
                .with_infer_schema_length(Some(0))
                .with_columns(self.columns.as_ref().map(|c| c.iter().map(PlSmallStr::from).collect()))
                .with_parse_options(
                    CsvParseOptions::default()
                        .with_separator(self.dialect.separator)
                        .with_quote_char(self.dialect.quote)
                        .with_truncate_ragged_lines(false),
                )
                .into_reader_with_file_handle(Cursor::new(body))
                .finish(),
        }
    }
}

/// Frames of single rows into one (JSON lines' may differ in columns and types: missing columns
/// become nulls, differing types become text).
fn concat_frames(frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    let mut names: Vec<PlSmallStr> = Vec::new();
    for f in &frames {
        for n in f.get_column_names() {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let height = frames.iter().map(DataFrame::height).sum();
    let mut cols = Vec::with_capacity(names.len());
    for n in names {
        let parts: Vec<Series> = frames
            .iter()
            .map(|f| match f.column(&n) {
                Ok(c) => c.as_materialized_series().clone(),
                Err(_) => Series::full_null(n.clone(), f.height(), &DataType::Null),
            })
            .collect();
        let mut dtype = DataType::Null;
        for p in &parts {
            if p.dtype() != &DataType::Null {
                dtype =
                    if dtype == DataType::Null || &dtype == p.dtype() { p.dtype().clone() } else { DataType::String };
            }
        }
        let mut acc: Option<Series> = None;
        for p in parts {
            let p = if p.dtype() == &dtype {
                p
            } else if dtype == DataType::String && !matches!(p.dtype(), DataType::Null) {
                Series::new(
                    n.clone(),
                    (0..p.len()).map(|i| p.get(i).ok().map(|v| any_to_json(&v).to_string())).collect::<Vec<_>>(),
                )
            } else {
                p.cast(&dtype)?
            };
            match &mut acc {
                None => acc = Some(p),
                Some(a) => {
                    a.append(&p)?;
                }
            }
        }
        cols.push(acc.unwrap_or_else(|| Series::new_empty(n.clone(), &DataType::Null)).into_column());
    }
    DataFrame::new_with_height(height, cols)
}

/// A cell as text (`None` for nulls): strings as they are, numbers in their shortest form,
/// nested values as JSON.
pub fn cell_text(col: &Column, i: usize) -> Option<String> {
    match col.get(i).ok()? {
        AnyValue::Null => None,
        AnyValue::String(s) => Some(s.to_owned()),
        AnyValue::StringOwned(s) => Some(s.to_string()),
        v @ (AnyValue::List(_) | AnyValue::Struct(..) | AnyValue::StructOwned(_)) => Some(any_to_json(&v).to_string()),
        v => Some(v.str_value().into_owned()),
    }
}

/// A cell as JSON (lists as arrays, structs as objects without their null fields).
pub fn any_to_json(v: &AnyValue<'_>) -> serde_json::Value {
    use serde_json::Value;
    match v {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(*b),
        AnyValue::String(s) => Value::String((*s).to_owned()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        AnyValue::UInt8(x) => (*x).into(),
        AnyValue::UInt16(x) => (*x).into(),
        AnyValue::UInt32(x) => (*x).into(),
        AnyValue::UInt64(x) => (*x).into(),
        AnyValue::Int8(x) => (*x).into(),
        AnyValue::Int16(x) => (*x).into(),
        AnyValue::Int32(x) => (*x).into(),
        AnyValue::Int64(x) => (*x).into(),
        AnyValue::Float32(x) => serde_json::Number::from_f64(f64::from(*x)).map_or(Value::Null, Value::Number),
        AnyValue::Float64(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        AnyValue::List(s) => {
            Value::Array((0..s.len()).filter_map(|i| s.get(i).ok()).map(|v| any_to_json(&v)).collect())
        }
        AnyValue::Struct(..) | AnyValue::StructOwned(_) => {
            let fields: Vec<(String, AnyValue<'_>)> = match v {
                AnyValue::StructOwned(b) => b.1.iter().map(|f| f.name().to_string()).zip(b.0.iter().cloned()).collect(),
                AnyValue::Struct(_, _, flds) => {
                    flds.iter().map(|f| f.name().to_string()).zip(v._iter_struct_av()).collect()
                }
                _ => unreachable!(),
            };
            Value::Object(fields.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, any_to_json(&v))).collect())
        }
        other => Value::String(other.str_value().into_owned()),
    }
}

/// Lines of a cell for the description or features: a list cell gives its elements, any other
/// its text; empty cells give none.
fn cell_lines(col: &Column, i: usize, out: &mut Vec<String>) {
    match col.get(i) {
        Ok(AnyValue::List(s)) => {
            for j in 0..s.len() {
                if let Ok(v) = s.get(j)
                    && !v.is_null()
                {
                    out.push(match v {
                        AnyValue::String(t) => t.to_owned(),
                        AnyValue::StringOwned(t) => t.to_string(),
                        other => any_to_json(&other).to_string(),
                    });
                }
            }
        }
        _ => {
            if let Some(t) = cell_text(col, i)
                && !t.is_empty()
            {
                out.push(t);
            }
        }
    }
}

/// A row's number and its record, or why it has none.
pub type MappedRow = (u64, std::result::Result<RawRecord, String>);

/// Details written as JSON text, in Python `json.dumps` form: empty stays empty, anything but an
/// object is an error for the row.
fn details_from_text(text: &str) -> std::result::Result<String, String> {
    let t = text.trim();
    if t.is_empty() {
        Ok(String::new())
    } else if t.starts_with('{') {
        crate::pyjson::transcode(t).map_err(|e| format!("details: not a JSON object ({e})"))
    } else {
        Err(format!("details: not a JSON object: {}", shorten(t, 40)))
    }
}

/// Maps a batch's rows to raw records; a price that is not a number becomes a column problem
/// (the row then has no price), a details cell that is not a JSON object makes the row malformed.
pub fn records(
    frame: &DataFrame,
    rows: &[u64],
    raw: Option<&RawLines>,
    mapping: &TableMapping,
    file: &str,
) -> (Vec<MappedRow>, Vec<LineError>) {
    let get = |c: &String| frame.column(c).ok();
    let title = mapping.title.as_ref().and_then(get);
    let description: Vec<&Column> = mapping.description.iter().filter_map(get).collect();
    let features: Vec<&Column> = mapping.features.iter().filter_map(get).collect();
    let price = mapping.price.as_ref().and_then(get);
    let category = match &mapping.category {
        CategoryMapping::Column(c) => get(c),
        CategoryMapping::Name(_) => None,
    };
    let details_json = match &mapping.details {
        DetailsMapping::Json(c) => get(c),
        _ => None,
    };
    let details_cols: Vec<(&String, &Column)> = match &mapping.details {
        DetailsMapping::Columns(cs) => cs.iter().filter_map(|c| get(c).map(|col| (c, col))).collect(),
        _ => Vec::new(),
    };
    let numeric_price = price.is_some_and(|c| c.dtype().is_primitive_numeric());
    let price_name = mapping.price.as_deref().unwrap_or("price");
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(frame.height());
    for (i, &row) in rows.iter().enumerate().take(frame.height()) {
        let price_field = match price {
            None => PriceField::Missing,
            Some(c) if numeric_price => match c.get(i) {
                Ok(v) => v.extract::<f64>().map_or(PriceField::Missing, PriceField::Number),
                Err(_) => PriceField::Missing,
            },
            Some(c) => match cell_text(c, i) {
                None => PriceField::Missing,
                Some(t) if t.trim().is_empty() => PriceField::Missing,
                Some(t) => match parse_price(&t, mapping.decimal) {
                    Some(v) => PriceField::Number(v),
                    None => {
                        problems.push(LineError {
                            file: file.to_owned(),
                            line: row,
                            message: format!("{price_name}: `{}` is not a price", shorten(&t, 40)),
                        });
                        PriceField::Missing
                    }
                },
            },
        };
        let details = if let (Some(raw), DetailsMapping::Json(key)) = (raw, &mapping.details) {
            // JSON lines: the object exactly as written (key order, repeated keys, numbers).
            match raw.value(i, key).map(serde_json::value::RawValue::get) {
                None | Some("null") => Ok(String::new()),
                Some(v) if v.starts_with('"') => match serde_json::from_str::<String>(v) {
                    Ok(t) => details_from_text(&t),
                    Err(e) => Err(format!("details: {e}")),
                },
                Some(v) => details_from_text(v),
            }
        } else if let Some(c) = details_json {
            match c.get(i) {
                Ok(AnyValue::Null) | Err(_) => Ok(String::new()),
                Ok(v @ (AnyValue::Struct(..) | AnyValue::StructOwned(_))) => Ok(crate::pyjson::dumps(&any_to_json(&v))),
                Ok(v) => details_from_text(&v.str_value()),
            }
        } else if !details_cols.is_empty() {
            let mut map = serde_json::Map::new();
            for (name, c) in &details_cols {
                if let Ok(v) = c.get(i) {
                    let j = any_to_json(&v);
                    let empty = match &j {
                        serde_json::Value::Null => true,
                        serde_json::Value::String(s) => s.is_empty(),
                        _ => false,
                    };
                    if !empty {
                        map.insert((*name).clone(), j);
                    }
                }
            }
            Ok(if map.is_empty() { String::new() } else { crate::pyjson::dumps(&serde_json::Value::Object(map)) })
        } else {
            Ok(String::new())
        };
        let rec = details.map(|details| {
            let mut d = Vec::new();
            for c in &description {
                cell_lines(c, i, &mut d);
            }
            let mut f = Vec::new();
            for c in &features {
                cell_lines(c, i, &mut f);
            }
            RawRecord {
                main_category: category.and_then(|c| cell_text(c, i)),
                title: title.and_then(|c| cell_text(c, i)).unwrap_or_default(),
                features: f,
                description: d,
                price: price_field,
                details,
            }
        });
        out.push((row, rec));
    }
    (out, problems)
}

/// [`records`] of a batch in parallel parts (the reader thread would otherwise make one core the
/// limit: polars parses in parallel, mapping cells to records is per row).
fn records_parallel(batch: &Batch, mapping: &TableMapping, file: &str) -> (Vec<MappedRow>, Vec<LineError>) {
    use rayon::prelude::*;
    let n = batch.frame.height().min(batch.rows.len());
    let parts = rayon::current_num_threads().max(1) * 2;
    let size = n.div_ceil(parts).max(1024);
    let outs: Vec<(Vec<MappedRow>, Vec<LineError>)> = (0..n.div_ceil(size))
        .into_par_iter()
        .map(|k| {
            let (start, len) = (k * size, size.min(n - k * size));
            let frame = batch.frame.slice(start as i64, len);
            let raw = batch.raw.as_ref().map(|r| r.slice(start, len));
            records(&frame, &batch.rows[start..start + len], raw.as_ref(), mapping, file)
        })
        .collect();
    let mut rows = Vec::with_capacity(n);
    let mut problems = Vec::new();
    for (r, p) in outs {
        rows.extend(r);
        problems.extend(p);
    }
    (rows, problems)
}

/// Reads a table source in batches and sends its rows as records (the curation driver calls it
/// for sources with a table spec, [`crate::load::read_source`] for the others). Returns false when `send` asked to stop.
pub fn read_source(
    source: usize,
    src: &Source,
    spec: &TableSpec,
    counter: &Arc<AtomicU64>,
    send: &mut impl FnMut(Chunk) -> bool,
) -> bool {
    let SourceData::Path(path) = &src.data else {
        return send(Chunk::FileError { source, message: format!("{}: a table must be a file", src.name) });
    };
    let size = src.size();
    let start = counter.load(Ordering::Relaxed);
    let columns = Some(spec.mapping.columns());
    let mut reader = match BatchReader::open(path, spec.kind, spec.dialect, columns, usize::MAX, Some(counter)) {
        Ok(r) => r,
        Err(e) => return send(Chunk::FileError { source, message: e.to_string() }),
    };
    loop {
        match reader.next_batch() {
            Ok(None) => return true,
            Ok(Some(batch)) => {
                let (mut rows, mut problems) = records_parallel(&batch, &spec.mapping, &src.name);
                // Records polars refused take their place as malformed rows.
                for e in batch.errors {
                    rows.push((e.line, Err(e.message)));
                }
                rows.sort_by_key(|(l, _)| *l);
                problems.sort_by_key(|p| p.line);
                if let Some(f) = reader.fraction() {
                    counter.store(start + (f * size as f64) as u64, Ordering::Relaxed);
                }
                let bytes_read = counter.load(Ordering::Relaxed);
                if !send(Chunk::Records { source, rows, problems, bytes_read }) {
                    return false;
                }
            }
            Err(e) => return send(Chunk::FileError { source, message: e.to_string() }),
        }
    }
}

/// Whether a JSON-lines or Parquet file is in Amazon's raw layout (or curated items), which the
/// raw reader curates without a mapping: `title` plus `main_category` or `parent_asin`, or a
/// `prompt` column. CSV and Arrow files are always user tables.
pub fn is_amazon_layout(path: &Path) -> Result<bool> {
    let Some(kind) = TableKind::of(path) else { return Ok(true) };
    let names: Vec<String> = match kind {
        TableKind::Csv | TableKind::Arrow => return Ok(false),
        TableKind::Parquet => {
            use parquet::file::reader::FileReader;
            let schema = crate::items_io::parquet_file(path)?.metadata().file_metadata().schema_descr_ptr();
            schema.root_schema().get_fields().iter().map(|f| f.name().to_owned()).collect()
        }
        // Not JSON objects: the raw reader reports its lines as malformed.
        TableKind::JsonLines => match crate::items_io::first_line_keys(path)? {
            Some(keys) if !keys.is_empty() => keys,
            _ => return Ok(true),
        },
    };
    let has = |k: &str| names.iter().any(|n| n == k);
    Ok(has("prompt") || (has("title") && (has("main_category") || has("parent_asin"))))
}

/// The spec to read a table with: a saved one for its columns, else the guess. Validated.
pub fn spec_for(path: &Path, saved: Option<&SavedMappings>) -> Result<(TableSpec, TableSchema, bool)> {
    let head = inspect(path, None, INSPECT_ROWS)?;
    if let Some(spec) = saved.and_then(|s| s.get(&head.schema)) {
        spec.mapping.validate(&head.schema)?;
        return Ok((spec.clone(), head.schema, true));
    }
    let mapping = TableMapping::guess(&head.schema, &default_category(path));
    mapping.validate(&head.schema)?;
    Ok((TableSpec { kind: head.schema.kind, dialect: head.schema.dialect, mapping }, head.schema, false))
}
impl TableSpec {
    /// A source of `path` read with this spec (category from the mapping).
    pub fn source(self, path: &Path) -> Source {
        let mut src = Source::from_path(path, None);
        src.category = match &self.mapping.category {
            CategoryMapping::Name(n) => Some(n.clone()),
            CategoryMapping::Column(_) => None,
        };
        src.table = Some(Arc::new(self));
        src
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunker(text: &str, chunk_bytes: usize) -> TextChunker {
        let input: Box<dyn Read + Send> = Box::new(Cursor::new(text.as_bytes().to_vec()));
        let mut c = TextChunker::new("t.csv".into(), input, TableKind::Csv, CsvDialect::default(), None, usize::MAX)
            .expect("chunker");
        c.chunk_bytes = chunk_bytes;
        c
    }

    #[test]
    fn chunks_end_on_whole_records_with_their_line_numbers() {
        // Quoted newlines, a blank line, CRLF, no newline at the end; 16-byte chunks cut inside
        // every quoted field.
        let text = "\u{feff}a,b\r\n1,\"x\ny\nz\"\r\n2,plain\n\n3,\"q,\"\"w\"\"\n\"\n4,end";
        for chunk in [16, 1 << 20] {
            let mut c = chunker(text, chunk);
            let (mut a, mut b, mut lines) = (Vec::new(), Vec::new(), Vec::new());
            while let Some(batch) = c.next_batch().expect("batch") {
                assert!(batch.errors.is_empty(), "{:?}", batch.errors);
                for i in 0..batch.frame.height() {
                    a.push(cell_text(batch.frame.column("a").unwrap(), i).unwrap());
                    b.push(cell_text(batch.frame.column("b").unwrap(), i).unwrap());
                }
                lines.extend(batch.rows);
            }
            assert_eq!(a, ["1", "2", "3", "4"], "chunk {chunk}");
            assert_eq!(b, ["x\ny\nz", "plain", "q,\"w\"\n", "end"], "chunk {chunk}");
            assert_eq!(lines, [2, 5, 7, 9], "chunk {chunk}");
        }
    }

    #[test]
    fn a_ragged_record_is_reported_by_its_line_and_the_rest_kept() {
        let mut c = chunker("a,b\n1,2\n3,4,5\n6,7\n", 1 << 20);
        let batch = c.next_batch().unwrap().unwrap();
        assert_eq!(batch.rows, [2, 4]);
        assert_eq!(batch.errors.len(), 1);
        assert_eq!(batch.errors[0].line, 3);
    }

    #[test]
    fn sniffs_separators_quotes_and_headers() {
        let d = CsvDialect::sniff(b"\xEF\xBB\xBFname;price\n\"a;b\";1,5\nc;2\n", false);
        assert_eq!(d, CsvDialect { separator: b';', quote: Some(b'"'), has_header: true });
        let d = CsvDialect::sniff(b"x\t12\ny\t13\n", false);
        assert_eq!((d.separator, d.has_header), (b'\t', false));
    }
}
