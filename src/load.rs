//! Reading raw Amazon metadata: `.jsonl`, `.jsonl.gz` and Parquet, raw or Hugging Face row form.
//! Files are read in bounded chunks of lines on a reader thread; a malformed line becomes a
//! [`LineError`] with its file and line number and reading goes on.

use crate::pyjson;
use crate::{Error, Result};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Lines longer than this are reported as malformed without being held in memory.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;

/// The price field as it appears in the input.
#[derive(Clone, Debug, PartialEq)]
pub enum PriceField {
    /// Absent or `null`.
    Missing,
    /// A JSON number (raw form).
    Number(f64),
    /// A string (Hugging Face form; `"None"` when missing).
    Text(String),
}

impl PriceField {
    /// Python's `float(x)`: `None` when missing or unparsable.
    pub fn parse(&self) -> Option<f64> {
        match self {
            Self::Missing => None,
            Self::Number(f) => Some(*f),
            Self::Text(s) => parse_py_float(s),
        }
    }
}

/// Python `float(str)`: surrounding whitespace allowed, `_` between digits allowed, `inf`/`nan`.
pub fn parse_py_float(s: &str) -> Option<f64> {
    let t = s.trim_matches(crate::text::is_py_space);
    if let Ok(f) = t.parse::<f64>() {
        return Some(f);
    }
    if t.contains('_') {
        let b = t.as_bytes();
        let ok = b.iter().enumerate().all(|(i, &c)| {
            c != b'_' || (i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit())
        });
        if ok {
            return t.replace('_', "").parse().ok();
        }
    }
    None
}

/// One raw product record, normalised from either form.
#[derive(Clone, Debug, PartialEq)]
pub struct RawRecord {
    /// `main_category`, if present.
    pub main_category: Option<String>,
    /// Product title (empty when absent).
    pub title: String,
    /// Feature bullet lines.
    pub features: Vec<String>,
    /// Description lines.
    pub description: Vec<String>,
    /// The price field.
    pub price: PriceField,
    /// Details as the Python `json.dumps` string ("" when absent).
    pub details: String,
}

#[derive(Deserialize)]
struct LineRecord<'a> {
    #[serde(default)]
    main_category: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(default)]
    description: Option<Vec<String>>,
    #[serde(default, borrow)]
    price: Option<&'a RawValue>,
    #[serde(default, borrow)]
    details: Option<&'a RawValue>,
}

/// Parses one JSON line in raw or Hugging Face row form.
pub fn parse_line(line: &[u8]) -> std::result::Result<RawRecord, String> {
    let rec: LineRecord<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let price = match rec.price.map(RawValue::get) {
        None | Some("null") => PriceField::Missing,
        Some(raw) if raw.starts_with('"') => {
            PriceField::Text(serde_json::from_str(raw).map_err(|e| format!("price: {e}"))?)
        }
        Some(raw) => match raw.parse::<f64>() {
            Ok(f) => PriceField::Number(f),
            Err(_) => return Err(format!("price: expected a number, a string or null, found {}", short(raw))),
        },
    };
    let details = match rec.details.map(RawValue::get) {
        None | Some("null") => String::new(),
        Some(raw) if raw.starts_with('"') => serde_json::from_str(raw).map_err(|e| format!("details: {e}"))?,
        Some(raw) if raw.starts_with('{') => pyjson::transcode(raw).map_err(|e| format!("details: {e}"))?,
        Some(raw) => return Err(format!("details: expected an object, a string or null, found {}", short(raw))),
    };
    Ok(RawRecord {
        main_category: rec.main_category,
        title: rec.title.unwrap_or_default(),
        features: rec.features.unwrap_or_default(),
        description: rec.description.unwrap_or_default(),
        price,
        details,
    })
}

fn short(s: &str) -> String {
    let cut = crate::text::py_prefix(s, 40);
    if cut.len() < s.len() { format!("{cut}…") } else { cut.to_owned() }
}

/// The dataset name of a file named `meta_<Category>.jsonl[.gz]` / `.parquet`.
pub fn category_from_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_prefix("meta_")?;
    let stem = stem.split('.').next()?;
    (!stem.is_empty()).then(|| stem.to_owned())
}

/// Dataset-style name for a `main_category` value: `Tools & Home Improvement` →
/// `Tools_and_Home_Improvement`.
pub fn normalize_category(main_category: &str) -> String {
    main_category.trim().replace(" & ", "_and_").replace('&', "and").replace(' ', "_")
}

/// The format of an input, from its file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// JSON lines.
    Jsonl,
    /// Gzip-compressed JSON lines.
    JsonlGz,
    /// Parquet.
    Parquet,
}

impl InputFormat {
    /// Detects the format from a file name (`.gz`, `.parquet`, anything else is JSON lines).
    pub fn from_name(name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".gz") {
            Self::JsonlGz
        } else if lower.ends_with(".parquet") {
            Self::Parquet
        } else {
            Self::Jsonl
        }
    }
}

/// Where an input's bytes come from.
#[derive(Clone, Debug)]
pub enum SourceData {
    /// A file on disk.
    Path(PathBuf),
    /// Bytes in memory (the built-in demo).
    Bytes(Arc<[u8]>),
}

/// One input of a loading job.
#[derive(Clone, Debug)]
pub struct Source {
    /// Display name (the file name).
    pub name: String,
    /// The bytes.
    pub data: SourceData,
    /// Category for every record of this input; `None`: from the file name, else `main_category`.
    pub category: Option<String>,
    /// Format.
    pub format: InputFormat,
    /// A user's table (CSV, Parquet, JSON lines, Arrow) read through this mapping instead of
    /// Amazon's layout.
    pub table: Option<Arc<crate::mapping::TableSpec>>,
}

impl Source {
    /// A file; category from an explicit value, else the file name.
    pub fn from_path(path: impl Into<PathBuf>, category: Option<String>) -> Self {
        let path = path.into();
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let category = category.or_else(|| category_from_file_name(&path));
        Self { format: InputFormat::from_name(&name), name, data: SourceData::Path(path), category, table: None }
    }

    /// In-memory bytes.
    pub fn from_bytes(name: &str, bytes: Arc<[u8]>, category: Option<String>) -> Self {
        Self {
            format: InputFormat::from_name(name),
            name: name.to_owned(),
            data: SourceData::Bytes(bytes),
            category,
            table: None,
        }
    }

    /// Size in bytes (for progress).
    pub fn size(&self) -> u64 {
        match &self.data {
            SourceData::Path(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            SourceData::Bytes(b) => b.len() as u64,
        }
    }

    fn open(&self, counter: Arc<AtomicU64>) -> Result<Box<dyn Read + Send>> {
        let raw: Box<dyn Read + Send> = match &self.data {
            SourceData::Path(p) => Box::new(std::fs::File::open(p).map_err(|e| Error::io(p, e))?),
            SourceData::Bytes(b) => Box::new(std::io::Cursor::new(b.clone())),
        };
        Ok(Box::new(CountingReader { inner: raw, counter }))
    }
}

/// Adds the bytes read to a shared counter (progress).
pub(crate) struct CountingReader<R> {
    pub(crate) inner: R,
    pub(crate) counter: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// How many malformed lines a report quotes.
pub const MAX_REPORTED_ERRORS: usize = 10;

/// A line that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// Input name.
    pub file: String,
    /// 1-based line number (row number for Parquet).
    pub line: u64,
    /// What was wrong.
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// A chunk of input handed from the reader thread to the workers.
pub enum Chunk {
    /// JSON lines: `buf[spans[i].0..spans[i].1]` is line `spans[i].2`.
    Lines {
        /// Index of the source.
        source: usize,
        /// Line bytes back to back.
        buf: Vec<u8>,
        /// (start, end, 1-based line number).
        spans: Vec<(usize, usize, u64)>,
        /// Lines that were malformed before parsing (too long).
        errors: Vec<LineError>,
        /// Input bytes read (over all sources) when the chunk was cut, for progress.
        bytes_read: u64,
    },
    /// Records already decoded (Parquet rows).
    Records {
        /// Index of the source.
        source: usize,
        /// (row number, record or error).
        rows: Vec<(u64, std::result::Result<RawRecord, String>)>,
        /// Cells that could not be read (a price that is not a number), by row number; their rows
        /// are still curated.
        problems: Vec<LineError>,
        /// Input bytes read (over all sources) when the chunk was cut, for progress.
        bytes_read: u64,
    },
    /// A whole-file problem (unreadable file, truncated gzip); what was read before is kept.
    FileError {
        /// Index of the source.
        source: usize,
        /// What happened.
        message: String,
    },
}

/// Options of the line reader.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// Bytes of line data per chunk (bounds memory: about 3 chunks are alive at once).
    pub chunk_bytes: usize,
    /// Longest accepted line.
    pub max_line_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self { chunk_bytes: 4 << 20, max_line_bytes: DEFAULT_MAX_LINE_BYTES }
    }
}

/// Reads every source in order and sends chunks to `send` (which returns false to stop).
/// `counter` accumulates the (compressed) bytes read, for progress. Sources with a table spec are
/// not read here (the curation driver hands them to the table reader).
pub fn read_sources(
    sources: &[Source],
    opts: ReadOptions,
    counter: &Arc<AtomicU64>,
    mut send: impl FnMut(Chunk) -> bool,
) {
    for (si, src) in sources.iter().enumerate() {
        if !read_source(si, src, opts, counter, &mut send) {
            return;
        }
    }
}

/// Reads source number `si` (Amazon's layout: JSON lines, gzip, Parquet). Returns false when
/// `send` asked to stop.
pub fn read_source(
    si: usize,
    src: &Source,
    opts: ReadOptions,
    counter: &Arc<AtomicU64>,
    send: &mut impl FnMut(Chunk) -> bool,
) -> bool {
    let reader = match src.open(counter.clone()) {
        Ok(r) => r,
        Err(e) => return send(Chunk::FileError { source: si, message: e.to_string() }),
    };
    match src.format {
        InputFormat::Jsonl => read_lines(si, &src.name, reader, opts, counter, send),
        InputFormat::JsonlGz => {
            let gz = Box::new(flate2::read::MultiGzDecoder::new(reader));
            read_lines(si, &src.name, gz, opts, counter, send)
        }
        InputFormat::Parquet => {
            counter.fetch_add(src.size(), Ordering::Relaxed);
            read_parquet(si, src, counter, send)
        }
    }
}

/// Splits a byte stream into lines, chunk by chunk. Returns false when `send` asked to stop.
fn read_lines(
    source: usize,
    name: &str,
    reader: Box<dyn Read + Send>,
    opts: ReadOptions,
    counter: &AtomicU64,
    send: &mut impl FnMut(Chunk) -> bool,
) -> bool {
    let pos = || counter.load(Ordering::Relaxed);
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut buf = Vec::with_capacity(opts.chunk_bytes + (64 << 10));
    let mut spans = Vec::new();
    let mut errors = Vec::new();
    let mut line_no = 0u64;
    let mut line_start = 0usize;
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Keep what was read: flush the partial chunk, then report the file problem.
                let message = format!("{name}: read error after line {line_no}: {e} (lines before it were kept)");
                return send(Chunk::Lines { source, buf, spans, errors, bytes_read: pos() })
                    && send(Chunk::FileError { source, message });
            }
        };
        if available.is_empty() {
            // End of input: a last line without a newline still counts.
            if too_long || buf.len() > line_start {
                line_no += 1;
                push_line(&mut buf, &mut spans, &mut errors, &mut line_start, &mut too_long, line_no, name, opts);
            }
            return send(Chunk::Lines { source, buf, spans, errors, bytes_read: pos() });
        }
        let (piece, found_newline) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        let piece_len = piece.len();
        if !too_long {
            if buf.len() - line_start + piece_len > opts.max_line_bytes {
                too_long = true;
                buf.truncate(line_start);
            } else {
                buf.extend_from_slice(piece);
            }
        }
        reader.consume(piece_len + usize::from(found_newline));
        if found_newline {
            line_no += 1;
            push_line(&mut buf, &mut spans, &mut errors, &mut line_start, &mut too_long, line_no, name, opts);
            if buf.len() >= opts.chunk_bytes {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(opts.chunk_bytes + (64 << 10)));
                if !send(Chunk::Lines {
                    source,
                    buf: full,
                    spans: std::mem::take(&mut spans),
                    errors: std::mem::take(&mut errors),
                    bytes_read: pos(),
                }) {
                    return false;
                }
                line_start = 0;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn push_line(
    buf: &mut [u8],
    spans: &mut Vec<(usize, usize, u64)>,
    errors: &mut Vec<LineError>,
    line_start: &mut usize,
    too_long: &mut bool,
    line_no: u64,
    name: &str,
    opts: ReadOptions,
) {
    if *too_long {
        errors.push(LineError {
            file: name.to_owned(),
            line: line_no,
            message: format!("line longer than {} bytes", opts.max_line_bytes),
        });
        *too_long = false;
    } else {
        let mut end = buf.len();
        if end > *line_start && buf[end - 1] == b'\r' {
            end -= 1;
        }
        spans.push((*line_start, end, line_no));
    }
    *line_start = buf.len();
}

fn read_parquet(source: usize, src: &Source, counter: &AtomicU64, send: &mut impl FnMut(Chunk) -> bool) -> bool {
    let pos = || counter.load(Ordering::Relaxed);
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let rows = match &src.data {
        SourceData::Path(p) => std::fs::File::open(p)
            .map_err(|e| e.to_string())
            .and_then(|f| SerializedFileReader::new(f).map_err(|e| e.to_string()))
            .map(|r| Box::new(r) as Box<dyn FileReader>),
        SourceData::Bytes(b) => SerializedFileReader::new(bytes::Bytes::from(b.to_vec()))
            .map_err(|e| e.to_string())
            .map(|r| Box::new(r) as Box<dyn FileReader>),
    };
    let reader = match rows {
        Ok(r) => r,
        Err(e) => return send(Chunk::FileError { source, message: format!("{}: {e}", src.name) }),
    };
    let iter = match reader.get_row_iter(None) {
        Ok(it) => it,
        Err(e) => return send(Chunk::FileError { source, message: format!("{}: {e}", src.name) }),
    };
    let mut batch = Vec::with_capacity(4096);
    for (i, row) in iter.enumerate() {
        let rec = match row {
            Ok(row) => record_from_parquet_row(&row),
            Err(e) => Err(e.to_string()),
        };
        batch.push((i as u64 + 1, rec));
        if batch.len() == 4096
            && !send(Chunk::Records {
                source,
                rows: std::mem::take(&mut batch),
                problems: Vec::new(),
                bytes_read: pos(),
            })
        {
            return false;
        }
    }
    send(Chunk::Records { source, rows: batch, problems: Vec::new(), bytes_read: pos() })
}

fn record_from_parquet_row(row: &parquet::record::Row) -> std::result::Result<RawRecord, String> {
    use parquet::record::Field;
    fn text(f: &Field) -> Option<String> {
        match f {
            Field::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
    fn lines(f: &Field, name: &str) -> std::result::Result<Vec<String>, String> {
        match f {
            Field::Null => Ok(Vec::new()),
            Field::ListInternal(list) => list
                .elements()
                .iter()
                .map(|e| text(e).ok_or_else(|| format!("{name}: expected a list of strings")))
                .collect(),
            _ => Err(format!("{name}: expected a list of strings")),
        }
    }
    let mut rec = RawRecord {
        main_category: None,
        title: String::new(),
        features: Vec::new(),
        description: Vec::new(),
        price: PriceField::Missing,
        details: String::new(),
    };
    for (name, field) in row.get_column_iter() {
        match name.as_str() {
            "main_category" => rec.main_category = text(field),
            "title" => rec.title = text(field).unwrap_or_default(),
            "features" => rec.features = lines(field, "features")?,
            "description" => rec.description = lines(field, "description")?,
            "price" => {
                rec.price = match field {
                    Field::Null => PriceField::Missing,
                    Field::Str(s) => PriceField::Text(s.clone()),
                    Field::Double(d) => PriceField::Number(*d),
                    Field::Float(f) => PriceField::Number(f64::from(*f)),
                    Field::Long(l) => PriceField::Number(*l as f64),
                    Field::Int(i) => PriceField::Number(f64::from(*i)),
                    _ => return Err("price: expected a number, a string or null".into()),
                }
            }
            "details" => {
                rec.details = match field {
                    Field::Null => String::new(),
                    Field::Str(s) => s.clone(),
                    _ => return Err("details: expected a JSON string".into()),
                }
            }
            _ => {}
        }
    }
    Ok(rec)
}

/// Reads a whole (small) file of raw lines into records, for tests and tools.
pub fn read_records(path: &Path) -> Result<(Vec<RawRecord>, Vec<LineError>)> {
    let counter = Arc::new(AtomicU64::new(0));
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut file_error = None;
    read_sources(&[Source::from_path(path, None)], ReadOptions::default(), &counter, |chunk| {
        match chunk {
            Chunk::Lines { buf, spans, errors: errs, .. } => {
                errors.extend(errs);
                for (s, e, line) in spans {
                    if buf[s..e].iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match parse_line(&buf[s..e]) {
                        Ok(r) => records.push(r),
                        Err(message) => errors.push(LineError { file: path.display().to_string(), line, message }),
                    }
                }
            }
            Chunk::Records { rows, .. } => {
                for (line, r) in rows {
                    match r {
                        Ok(r) => records.push(r),
                        Err(message) => errors.push(LineError { file: path.display().to_string(), line, message }),
                    }
                }
            }
            Chunk::FileError { message, .. } => file_error = Some(message),
        }
        true
    });
    match file_error {
        Some(m) if records.is_empty() => Err(Error::InvalidInput(m)),
        _ => Ok((records, errors)),
    }
}

/// Opens a possibly gzip-compressed text file as a buffered reader.
pub fn open_text(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if InputFormat::from_name(&path.to_string_lossy()) == InputFormat::JsonlGz {
        Ok(Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(f))))
    } else {
        Ok(Box::new(BufReader::new(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_parsing() {
        assert_eq!(parse_py_float(" 25.55 "), Some(25.55));
        assert_eq!(parse_py_float("1_000.5"), Some(1000.5));
        assert_eq!(parse_py_float("None"), None);
        assert_eq!(parse_py_float("1__0"), None);
        assert_eq!(parse_py_float("$5"), None);
        assert_eq!(parse_py_float("1e2"), Some(100.0));
    }

    #[test]
    fn category_names() {
        assert_eq!(category_from_file_name(Path::new("/x/meta_Appliances.jsonl.gz")).as_deref(), Some("Appliances"));
        assert_eq!(category_from_file_name(Path::new("items.jsonl")), None);
        assert_eq!(normalize_category("Tools & Home Improvement"), "Tools_and_Home_Improvement");
    }
}
