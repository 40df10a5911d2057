//! Guesses made elsewhere — a spreadsheet, another tool, a person — read from a CSV, Parquet or
//! JSON-lines file with polars and joined to the test items by index or by title, with clear
//! errors for missing, duplicate and mismatching rows. Also the human pricer's CSV: the test
//! prompts written out with an empty `guess` column to fill in by hand.

use super::{Guess, Pricer};
use crate::evaluation::ImportSpec;
use crate::items::{ItemRef, ItemTable};
use crate::jobs::JobCtx;
use crate::{Error, Result};
use polars::prelude::*;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

/// Reads a user's table: `.csv`/`.tsv` (header row), `.parquet`, `.jsonl`/`.ndjson`/`.json` (JSON lines).
pub fn read_table(path: &Path) -> Result<DataFrame> {
    let bad = |e: PolarsError| Error::InvalidInput(format!("{}: {e}", path.display()));
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    let open = || std::fs::File::open(path).map_err(|e| Error::io(path, e));
    match ext.as_str() {
        "csv" | "tsv" | "txt" => {
            let sep = if ext == "tsv" { b'\t' } else { b',' };
            CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(0)) // every column as text; numbers are parsed here
                .with_parse_options(CsvParseOptions::default().with_separator(sep))
                .try_into_reader_with_file_path(Some(path.to_owned()))
                .and_then(|r| r.finish())
                .map_err(bad)
        }
        "parquet" => ParquetReader::new(open()?).finish().map_err(bad),
        "jsonl" | "ndjson" | "json" => JsonLineReader::new(open()?).finish().map_err(bad),
        other => Err(Error::InvalidInput(format!(
            "{}: unknown table type `.{other}` (use .csv, .tsv, .parquet or .jsonl)",
            path.display()
        ))),
    }
}

/// A column's values as text (`None` for nulls), or an error naming the columns there are.
pub fn text_column(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Option<String>>> {
    let col = df.column(name).map_err(|_| {
        let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
        Error::InvalidInput(format!("{}: no column `{name}` (columns: {})", path.display(), names.join(", ")))
    })?;
    let s = col.cast(&DataType::String).map_err(|e| Error::InvalidInput(format!("{}: {name}: {e}", path.display())))?;
    let ca = s.str().map_err(|e| Error::InvalidInput(format!("{}: {name}: {e}", path.display())))?;
    Ok(ca.into_iter().map(|v| v.map(str::to_owned)).collect())
}

/// A number from a cell: `$1,299.00`, ` 12.5 `, `-3`; `None` when there is none.
pub fn parse_number(s: &str) -> Option<f64> {
    let t: String = s.trim().chars().filter(|c| !matches!(c, '$' | ',' | ' ')).collect();
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The human pricer's file: `index`, `title`, `guess`.
pub fn human_spec(file: &Path) -> ImportSpec {
    ImportSpec {
        file: file.to_owned(),
        guess_column: "guess".into(),
        index_column: Some("index".into()),
        title_column: Some("title".into()),
        truth_column: None,
    }
}

/// Writes the test items `range` for a person to price: index, title, category, the test prompt
/// and an empty `guess` column.
pub fn write_human_csv(test: &ItemTable, range: Range<usize>, path: &Path) -> Result<usize> {
    let range = range.start.min(test.len())..range.end.min(test.len());
    let n = range.len();
    crate::atomic::write_atomic(path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        let io = std::io::Error::other;
        csv.write_record(["index", "title", "category", "prompt", "guess"]).map_err(io)?;
        for i in range {
            let it = test.get(i);
            csv.write_record([i.to_string().as_str(), it.title, it.category, it.test_prompt(), ""]).map_err(io)?;
        }
        csv.flush()
    })?;
    Ok(n)
}

/// Imported guesses, by test index.
pub struct ImportedPricer {
    guesses: HashMap<usize, f64>,
    rows: usize,
    joined_by: &'static str,
}

impl ImportedPricer {
    /// Reads the file and joins it to the test items `evaluated`.
    pub fn read(spec: &ImportSpec, test: &ItemTable, evaluated: Range<usize>, _ctx: &JobCtx) -> Result<Self> {
        let path = &spec.file;
        let df = read_table(path)?;
        let has = |n: &str| df.get_column_names().iter().any(|c| c.as_str() == n);
        let index_col = spec.index_column.clone().or_else(|| has("index").then(|| "index".to_owned()));
        let title_col = spec.title_column.clone().or_else(|| has("title").then(|| "title".to_owned()));
        let guess = text_column(&df, &spec.guess_column, path)?;
        let index = index_col.as_deref().map(|c| text_column(&df, c, path)).transpose()?;
        let title = title_col.as_deref().map(|c| text_column(&df, c, path)).transpose()?;
        let truth = spec.truth_column.as_deref().map(|c| text_column(&df, c, path)).transpose()?;
        let where_ = |row: usize| format!("{} row {}", path.display(), row + 2);
        // Title → test index, for joining by title.
        let by_title: HashMap<&str, Vec<usize>> = if index.is_none() {
            let mut m: HashMap<&str, Vec<usize>> = HashMap::new();
            for i in evaluated.clone() {
                m.entry(test.get(i).title.trim()).or_default().push(i);
            }
            m
        } else {
            HashMap::new()
        };
        if index.is_none() && title.is_none() {
            return Err(Error::InvalidInput(format!(
                "{}: say how rows join the test items: an index column (--index-column) or a title column (--title-column)",
                path.display()
            )));
        }
        let mut guesses: HashMap<usize, f64> = HashMap::new();
        let mut first_row: HashMap<usize, usize> = HashMap::new();
        for row in 0..df.height() {
            let i = match (&index, &title) {
                (Some(ix), _) => {
                    let s = ix[row].as_deref().unwrap_or("").trim();
                    let i = s
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.fract() == 0.0 && *v >= 0.0)
                        .map(|v| v as usize)
                        .ok_or_else(|| {
                            Error::InvalidInput(format!("{}: index `{s}` is not a whole number", where_(row)))
                        })?;
                    if i >= test.len() {
                        return Err(Error::InvalidInput(format!(
                            "{}: index {i} is past the {} test items",
                            where_(row),
                            test.len()
                        )));
                    }
                    if let Some(Some(t)) = title.as_ref().map(|t| t[row].as_deref()) {
                        let want = test.get(i).title;
                        if t.trim() != want.trim() {
                            return Err(Error::InvalidInput(format!(
                                "{}: title `{}` does not match test item {i} `{want}`",
                                where_(row),
                                t.trim()
                            )));
                        }
                    }
                    i
                }
                (None, Some(tt)) => {
                    let t = tt[row].as_deref().unwrap_or("").trim();
                    match by_title.get(t).map(Vec::as_slice) {
                        Some([i]) => *i,
                        Some(many) => {
                            return Err(Error::InvalidInput(format!(
                                "{}: title `{t}` names {} test items ({:?}); join by index instead",
                                where_(row),
                                many.len(),
                                many
                            )));
                        }
                        None => continue, // a row for an item outside the evaluated range
                    }
                }
                (None, None) => unreachable!(),
            };
            if !evaluated.contains(&i) {
                continue;
            }
            if let Some(prev) = first_row.insert(i, row) {
                return Err(Error::InvalidInput(format!(
                    "{}: test item {i} is guessed twice (also {})",
                    where_(row),
                    where_(prev)
                )));
            }
            let g = guess[row].as_deref().unwrap_or("");
            let value = parse_number(g).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{}: guess `{}` in `{}` is not a number",
                    where_(row),
                    g,
                    spec.guess_column
                ))
            })?;
            if let Some(tr) = &truth {
                let t = tr[row].as_deref().and_then(parse_number);
                let want = test.get(i).price;
                if t.is_none_or(|t| (t - want).abs() > 0.005) {
                    return Err(Error::InvalidInput(format!(
                        "{}: truth {} does not match test item {i}'s price {want}",
                        where_(row),
                        tr[row].as_deref().unwrap_or("(empty)")
                    )));
                }
            }
            guesses.insert(i, value);
        }
        let missing: Vec<usize> = evaluated.clone().filter(|i| !guesses.contains_key(i)).collect();
        if !missing.is_empty() {
            let shown: Vec<String> = missing.iter().take(10).map(|i| i.to_string()).collect();
            return Err(Error::InvalidInput(format!(
                "{}: no guess for {} of the {} test items priced (indices {}{})",
                path.display(),
                missing.len(),
                evaluated.len(),
                shown.join(", "),
                if missing.len() > 10 { ", …" } else { "" }
            )));
        }
        Ok(Self { guesses, rows: df.height(), joined_by: if index.is_some() { "index" } else { "title" } })
    }
}

impl Pricer for ImportedPricer {
    fn price(&self, batch: &[(usize, ItemRef<'_>)], _: &JobCtx) -> Result<Vec<Guess>> {
        batch
            .iter()
            .map(|(i, _)| {
                self.guesses
                    .get(i)
                    .map(|&g| Guess::of(g))
                    .ok_or_else(|| Error::InvalidInput(format!("no imported guess for test item {i}")))
            })
            .collect()
    }
    fn fitted(&self) -> serde_json::Value {
        serde_json::json!({ "rows": self.rows, "joined_by": self.joined_by })
    }
}
