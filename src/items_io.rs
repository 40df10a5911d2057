//! Files of curated items: the one reader (JSON lines or Parquet, with progress, cancel and the
//! malformed rows with their line numbers) that the app, the CLI and the trainer share, the
//! writer of all fields, and the Parquet column writer the exports use.

use crate::atomic::write_atomic;
use crate::items::ItemTable;
use crate::jobs::{JobCtx, Progress};
use crate::load::{InputFormat, LineError};
use crate::{Error, Result};
use serde::Deserialize;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Writes the curated items with all their fields (`.parquet`, else JSON lines).
pub fn write_items(table: &ItemTable, path: &Path) -> Result<()> {
    if path.to_string_lossy().to_ascii_lowercase().ends_with(".parquet") {
        let n = table.len();
        let titles: Vec<&str> = (0..n).map(|i| table.get(i).title).collect();
        let cats: Vec<&str> = (0..n).map(|i| table.get(i).category).collect();
        let details: Vec<&str> = (0..n).map(|i| table.get(i).details()).collect();
        let prompts: Vec<&str> = (0..n).map(|i| table.get(i).prompt).collect();
        let counts: Vec<f64> = table.token_counts().iter().map(|&c| f64::from(c)).collect();
        write_parquet(
            path,
            &[
                ("title", Column::Str(&titles)),
                ("category", Column::Str(&cats)),
                ("details", Column::Str(&details)),
                ("prompt", Column::Str(&prompts)),
            ],
            &[("price", table.prices()), ("token_count", &counts)],
        )
    } else {
        write_atomic(path, |w| {
            for it in table.iter() {
                serde_json::to_writer(&mut *w, &it.to_owned_item())?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })
    }
}

pub(crate) enum Column<'a> {
    /// Strings.
    Str(&'a [&'a str]),
}

const ROW_GROUP_ROWS: usize = 100_000;

pub(crate) fn write_parquet(path: &Path, str_cols: &[(&str, Column<'_>)], f64_cols: &[(&str, &[f64])]) -> Result<()> {
    use parquet::basic::{Compression, ConvertedType, Repetition, Type as PhysicalType};
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::types::Type;

    let n = f64_cols.first().map_or(0, |c| c.1.len());
    let mut fields = Vec::new();
    for (name, _) in str_cols {
        fields.push(Arc::new(
            Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
                .with_repetition(Repetition::REQUIRED)
                .with_converted_type(ConvertedType::UTF8)
                .build()
                .map_err(|e| Error::Parquet { path: path.into(), message: e.to_string() })?,
        ));
    }
    for (name, _) in f64_cols {
        fields.push(Arc::new(
            Type::primitive_type_builder(name, PhysicalType::DOUBLE)
                .with_repetition(Repetition::REQUIRED)
                .build()
                .map_err(|e| Error::Parquet { path: path.into(), message: e.to_string() })?,
        ));
    }
    let schema = Arc::new(
        Type::group_type_builder("schema")
            .with_fields(fields)
            .build()
            .map_err(|e| Error::Parquet { path: path.into(), message: e.to_string() })?,
    );
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::LZ4_RAW).build());
    write_atomic(path, |w| {
        let pq = |e: parquet::errors::ParquetError| std::io::Error::other(e.to_string());
        let mut writer = SerializedFileWriter::new(w, schema, props).map_err(pq)?;
        let mut start = 0;
        while start < n || (n == 0 && start == 0) {
            let end = (start + ROW_GROUP_ROWS).min(n);
            let mut rg = writer.next_row_group().map_err(pq)?;
            let mut col_idx = 0;
            while let Some(mut col) = rg.next_column().map_err(pq)? {
                if col_idx < str_cols.len() {
                    let Column::Str(values) = &str_cols[col_idx].1;
                    let batch: Vec<ByteArray> =
                        values[start..end].iter().map(|s| ByteArray::from(s.as_bytes().to_vec())).collect();
                    col.typed::<ByteArrayType>().write_batch(&batch, None, None).map_err(pq)?;
                } else {
                    let values = f64_cols[col_idx - str_cols.len()].1;
                    col.typed::<DoubleType>().write_batch(&values[start..end], None, None).map_err(pq)?;
                }
                col.close().map_err(pq)?;
                col_idx += 1;
            }
            rg.close().map_err(pq)?;
            if n == 0 {
                break;
            }
            start = end;
        }
        writer.close().map_err(pq)?;
        Ok(())
    })
}

/// Reads a file of curated items (JSON lines with at least `title, category, price, prompt`,
/// or Parquet with those columns). Returns the table and the malformed lines.
pub fn read_items(path: &Path) -> Result<(ItemTable, Vec<LineError>)> {
    read_items_with(path, &JobCtx::default())
}

/// [`read_items`] reporting progress (rows read) and stopping with `Cancelled` when asked.
pub fn read_items_with(path: &Path, ctx: &JobCtx) -> Result<(ItemTable, Vec<LineError>)> {
    let stage = format!(
        "reading {}",
        path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
    );
    // JSON lines: progress every 50,000 lines, total unknown (0).
    let tick = |i: usize, n_items: usize| -> Result<()> {
        if i.is_multiple_of(50_000) {
            ctx.check()?;
            ctx.report(&Progress { stage: stage.clone(), done: i as u64, total: 0, n_items: n_items as u64 });
        }
        Ok(())
    };
    let mut table = ItemTable::new();
    let mut errors = Vec::new();
    let name = path.display().to_string();
    if path.to_string_lossy().to_ascii_lowercase().ends_with(".parquet") {
        // Progress and Cancel once per row group.
        read_parquet_items(path, &mut table, &mut errors, |done, n_items, total| {
            ctx.check()?;
            ctx.report(&Progress { stage: stage.clone(), done: done as u64, total, n_items: n_items as u64 });
            Ok(())
        })?;
    } else {
        use std::io::BufRead;
        let reader = crate::load::open_text(path)?;
        for (i, line) in reader.split(b'\n').enumerate() {
            tick(i, table.len())?;
            let line = line.map_err(|e| Error::io(path, e))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            #[derive(Deserialize)]
            struct Row {
                #[serde(default)]
                title: String,
                #[serde(default)]
                category: String,
                price: f64,
                #[serde(default)]
                details: String,
                #[serde(alias = "text")]
                prompt: String,
                #[serde(default)]
                token_count: u32,
            }
            match serde_json::from_slice::<Row>(&line) {
                Ok(r) => table.push_parts(&r.title, &r.category, r.price, &r.details, &r.prompt, r.token_count),
                Err(e) => errors.push(LineError { file: name.clone(), line: i as u64 + 1, message: e.to_string() }),
            }
        }
    }
    table.shrink_to_fit();
    Ok((table, errors))
}

/// The columns of a curated-items Parquet file, read column by column. Row groups are decoded
/// by worker threads (one per core, each with its own file handle: clones of one `File` would
/// share its offset) while this thread appends the decoded ones to `table` in file order, so the
/// copy into the table overlaps the decoding of the next row groups; at most a few row groups are
/// decoded ahead of the one being appended, which bounds the memory held besides the table.
/// Strings are `BYTE_ARRAY` (required or optional), `price` a `DOUBLE` or `FLOAT`,
/// `token_count` an `INT32`, `INT64` or `DOUBLE`; other columns, nested ones and columns of
/// another type are ignored. A row without a price or a prompt is reported with its row number.
/// `tick(rows done, items, total rows)` is called before each row group is appended; its error
/// (Cancel) stops the workers and is returned.
fn read_parquet_items(
    path: &Path,
    table: &mut ItemTable,
    errors: &mut Vec<LineError>,
    mut tick: impl FnMut(usize, usize, u64) -> Result<()>,
) -> Result<()> {
    use parquet::file::reader::FileReader;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Condvar, Mutex, mpsc};
    let reader = parquet_file(path)?;
    let meta = reader.metadata();
    let total_rows = meta.file_metadata().num_rows().max(0) as u64;
    let n_groups = meta.num_row_groups();
    let mut first_rows = Vec::with_capacity(n_groups);
    let mut rows = 0usize;
    for g in 0..n_groups {
        first_rows.push(rows);
        rows += meta.row_group(g).num_rows().max(0) as usize;
    }
    // Room for every item up front (a column's uncompressed size holds 4 length bytes per value).
    let column_bytes = |name: &str| -> usize {
        let schema = meta.file_metadata().schema_descr();
        (0..schema.num_columns())
            .filter(|&i| schema.column(i).path().parts() == [name.to_string()])
            .map(|i| {
                (0..n_groups)
                    .map(|g| {
                        let c = meta.row_group(g).column(i);
                        (c.uncompressed_size().max(0) as usize).saturating_sub(4 * c.num_values().max(0) as usize)
                    })
                    .sum::<usize>()
            })
            .sum()
    };
    let prompt_bytes = column_bytes("prompt").max(column_bytes("text"));
    table.reserve(rows, column_bytes("title"), column_bytes("details"), prompt_bytes);
    if n_groups == 0 {
        return Ok(());
    }
    let workers = rayon::current_num_threads().clamp(1, n_groups);
    let ahead = workers + 1;
    // The next row group to decode and the number appended so far (a worker waits while it
    // would run more than `ahead` row groups past the appended ones).
    let claims = Mutex::new((0usize, 0usize));
    let appended = Condvar::new();
    let stop = AtomicBool::new(false);
    type Part = Result<(ItemTable, Vec<LineError>)>;
    let (tx, rx) = mpsc::sync_channel::<(usize, Part)>(ahead);
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (claims, appended, stop, first_rows) = (&claims, &appended, &stop, &first_rows);
            s.spawn(move || {
                loop {
                    let g = {
                        let mut c = claims.lock().unwrap_or_else(|p| p.into_inner());
                        loop {
                            if stop.load(Ordering::Relaxed) || c.0 >= n_groups {
                                return;
                            }
                            if c.0 < c.1 + ahead {
                                c.0 += 1;
                                break c.0 - 1;
                            }
                            c = appended.wait(c).unwrap_or_else(|p| p.into_inner());
                        }
                    };
                    let mut part = ItemTable::new();
                    let part = parquet_file(path)
                        .and_then(|r| read_parquet_row_group(&r, g, first_rows[g], path, &mut part))
                        .map(|errors| (part, errors));
                    if tx.send((g, part)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        // Appends the parts in file order; dropping `rx` on the way out wakes blocked senders.
        let mut append_all = |rx: mpsc::Receiver<(usize, Part)>| -> Result<()> {
            let mut pending = std::collections::BTreeMap::new();
            for (g, &first_row) in first_rows.iter().enumerate() {
                tick(first_row, table.len(), total_rows)?;
                while !pending.contains_key(&g) {
                    let Ok((k, part)) = rx.recv() else { break };
                    pending.insert(k, part);
                }
                let (part, part_errors) = pending.remove(&g).ok_or_else(|| Error::Parquet {
                    path: path.into(),
                    message: format!("row group {g} was not read"),
                })??;
                table.extend_from(&part);
                errors.extend(part_errors);
                drop(part);
                claims.lock().unwrap_or_else(|p| p.into_inner()).1 = g + 1;
                appended.notify_all();
            }
            Ok(())
        };
        let result = append_all(rx);
        stop.store(true, Ordering::Relaxed);
        appended.notify_all();
        result
    })
}

/// One row group of [`read_parquet_items`]: its items appended to `table`, and its bad rows
/// (numbered from `first_row`).
fn read_parquet_row_group(
    reader: &parquet::file::reader::SerializedFileReader<std::fs::File>,
    g: usize,
    first_row: usize,
    path: &Path,
    table: &mut ItemTable,
) -> Result<Vec<LineError>> {
    use parquet::column::reader::ColumnReader;
    use parquet::data_type::ByteArray;
    use parquet::file::reader::FileReader;
    let perr = |e: parquet::errors::ParquetError| Error::Parquet { path: path.into(), message: e.to_string() };
    let schema = reader.metadata().file_metadata().schema_descr();
    let column = |names: &[&str]| {
        names.iter().find_map(|name| {
            (0..schema.num_columns()).find(|&i| {
                let c = schema.column(i);
                c.path().parts() == [name.to_string()] && c.max_rep_level() == 0
            })
        })
    };
    let rg = reader.get_row_group(g).map_err(perr)?;
    let n = rg.metadata().num_rows().max(0) as usize;
    let max_def = |i: usize| schema.column(i).max_def_level();
    let strings = |i: Option<usize>| -> Result<Option<Vec<Option<ByteArray>>>> {
        let Some(i) = i else { return Ok(None) };
        match rg.get_column_reader(i).map_err(perr)? {
            ColumnReader::ByteArrayColumnReader(r) => read_column(r, n, max_def(i)).map_err(perr).map(Some),
            _ => Ok(None),
        }
    };
    let numbers = |i: Option<usize>| -> Result<Option<Vec<Option<f64>>>> {
        let Some(i) = i else { return Ok(None) };
        let d = max_def(i);
        let col = match rg.get_column_reader(i).map_err(perr)? {
            ColumnReader::DoubleColumnReader(r) => read_column(r, n, d),
            ColumnReader::FloatColumnReader(r) => {
                read_column(r, n, d).map(|c| c.into_iter().map(|x| x.map(f64::from)).collect())
            }
            ColumnReader::Int64ColumnReader(r) => {
                read_column(r, n, d).map(|c| c.into_iter().map(|x| x.map(|x| x as f64)).collect())
            }
            ColumnReader::Int32ColumnReader(r) => {
                read_column(r, n, d).map(|c| c.into_iter().map(|x| x.map(f64::from)).collect())
            }
            _ => return Ok(None),
        };
        col.map_err(perr).map(Some)
    };
    let titles = strings(column(&["title"]))?;
    let categories = strings(column(&["category"]))?;
    let details = strings(column(&["details"]))?;
    let prompts = strings(column(&["prompt", "text"]))?;
    let prices = numbers(column(&["price"]))?;
    let counts = numbers(column(&["token_count"]))?;
    fn text(col: &Option<Vec<Option<ByteArray>>>, r: usize) -> Option<&str> {
        col.as_ref()?.get(r)?.as_ref().and_then(|b| std::str::from_utf8(b.data()).ok())
    }
    let number = |col: &Option<Vec<Option<f64>>>, r: usize| col.as_ref().and_then(|c| c.get(r).copied().flatten());
    let mut errors = Vec::new();
    let bytes = |col: &Option<Vec<Option<ByteArray>>>| {
        col.as_ref().map_or(0, |c| c.iter().map(|b| b.as_ref().map_or(0, |b| b.len())).sum::<usize>())
    };
    table.reserve(n, bytes(&titles), bytes(&details), bytes(&prompts));
    for r in 0..n {
        let (Some(price), Some(prompt)) = (number(&prices, r), text(&prompts, r).filter(|p| !p.is_empty())) else {
            errors.push(LineError {
                file: path.display().to_string(),
                line: (first_row + r) as u64 + 1,
                message: "missing price or prompt".into(),
            });
            continue;
        };
        table.push_parts(
            text(&titles, r).unwrap_or(""),
            text(&categories, r).unwrap_or(""),
            price,
            text(&details, r).unwrap_or(""),
            prompt,
            number(&counts, r).map_or(0, |c| c as u32),
        );
    }
    Ok(errors)
}

/// The `n` records of a flat column, one per row: its value, `None` where the definition level
/// says null.
fn read_column<T: parquet::data_type::DataType>(
    mut reader: parquet::column::reader::ColumnReaderImpl<T>,
    n: usize,
    max_def: i16,
) -> parquet::errors::Result<Vec<Option<T::T>>> {
    let (mut values, mut defs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut done = 0;
    while done < n {
        let (records, _, _) = reader.read_records(n - done, (max_def > 0).then_some(&mut defs), None, &mut values)?;
        if records == 0 {
            break;
        }
        done += records;
    }
    let mut values = values.into_iter();
    if max_def == 0 {
        return Ok(values.map(Some).collect());
    }
    Ok(defs.iter().map(|&d| if d == max_def { values.next() } else { None }).collect())
}

/// A file of curated items as read by [`ItemsFile::read`]: its items and the rows that could not
/// be used. The app, the CLI and the trainer read item files through it and report the same
/// malformed lines ([`ItemsFile::malformed_report`]).
#[derive(Clone, Debug)]
pub struct ItemsFile {
    /// The file.
    pub path: std::path::PathBuf,
    /// Its items.
    pub table: ItemTable,
    /// Rows skipped, with their line (or row) numbers.
    pub malformed: Vec<LineError>,
}

impl ItemsFile {
    /// Reads a file of curated items, reporting progress and stopping when cancelled. Fails when
    /// the file holds no usable item (the message says how many rows were malformed).
    pub fn read(path: &Path, ctx: &JobCtx) -> Result<Self> {
        let (table, malformed) = read_items_with(path, ctx)?;
        let file = Self { path: path.to_owned(), table, malformed };
        if file.table.is_empty() {
            let why = file.malformed_report().unwrap_or_else(|| "it is empty".into());
            return Err(Error::InvalidInput(format!("{} holds no items: {why}", path.display())));
        }
        Ok(file)
    }

    /// `"<file>: N malformed lines skipped"` and the first [`crate::load::MAX_REPORTED_ERRORS`]
    /// of them as `file:line: reason`; `None` when every row was good.
    pub fn malformed_report(&self) -> Option<String> {
        if self.malformed.is_empty() {
            return None;
        }
        let mut text = format!("{}: {} malformed lines skipped", self.path.display(), self.malformed.len());
        for e in self.malformed.iter().take(crate::load::MAX_REPORTED_ERRORS) {
            text.push_str(&format!("\n  {e}"));
        }
        Some(text)
    }
}

/// Whether a file holds curated items (a `prompt` or `text` field) rather than raw metadata.
pub fn is_items_file(path: &Path) -> Result<bool> {
    let name = path.to_string_lossy().to_string();
    match InputFormat::from_name(&name) {
        InputFormat::Parquet => {
            use parquet::file::reader::FileReader;
            let schema = parquet_file(path)?.metadata().file_metadata().schema_descr_ptr();
            Ok(schema.columns().iter().any(|c| c.name() == "prompt"))
        }
        _ => Ok(first_line_keys(path)?.is_some_and(|keys| keys.iter().any(|k| k == "prompt"))),
    }
}

/// A Parquet file's reader, or an error saying the file is not Parquet.
pub fn parquet_file(path: &Path) -> Result<parquet::file::reader::SerializedFileReader<std::fs::File>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    parquet::file::reader::SerializedFileReader::new(f)
        .map_err(|e| Error::Parquet { path: path.into(), message: format!("not a Parquet file: {e}") })
}

/// The keys of the first non-blank line of a JSON-lines file (within its first 50 lines; a BOM
/// skipped), in their order; `None` when that line is not a JSON object or there is none.
pub fn first_line_keys(path: &Path) -> Result<Option<Vec<String>>> {
    use std::io::BufRead;
    let reader = crate::load::open_text(path)?;
    for line in reader.split(b'\n').take(50) {
        let Ok(line) = line else { return Ok(None) };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = crate::mapping::strip_bom(&line);
        return Ok(serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line)
            .ok()
            .map(|m| m.keys().cloned().collect()));
    }
    Ok(None)
}
