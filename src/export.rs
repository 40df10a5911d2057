//! Writing items and datasets: curated items (JSONL or Parquet, all fields), and the training
//! exports of design.md §3 — Parquet `text`,`price`; JSONL of the same; OpenAI chat JSONL; CSV.
//! Every file is written to a temporary sibling and renamed into place, so a failed or cancelled
//! write never leaves a half-written file under the final name.

use crate::items::{ItemRef, ItemTable, PREFIX};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// System message of the chat format.
pub const SYSTEM_MESSAGE: &str = "You estimate prices of items. Reply only with the price, no explanation";

/// Writes `path` atomically: `write` fills a temporary file next to it, which is synced and
/// renamed over `path` only when `write` succeeds; otherwise it is removed.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let name = path.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write(&mut w)?;
        w.flush()?;
        w.get_ref().sync_all()?;
        drop(w);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Training export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Parquet with `text`, `price` (the `pricer-data` layout).
    Parquet,
    /// JSON lines `{"text": …, "price": …}`.
    Jsonl,
    /// OpenAI chat fine-tune JSONL.
    Openai,
    /// CSV `title,category,price,token_count,text`.
    Csv,
}

impl ExportFormat {
    /// Parses `parquet|jsonl|openai|csv`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" => Some(Self::Parquet),
            "jsonl" | "json" => Some(Self::Jsonl),
            "openai" | "chat" => Some(Self::Openai),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Jsonl | Self::Openai => "jsonl",
            Self::Csv => "csv",
        }
    }
}

/// Which text an export carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextForm {
    /// The full prompt, price included (training).
    Train,
    /// The prompt cut after `Price is $` (testing).
    Test,
}

fn text_of<'a>(item: &ItemRef<'a>, form: TextForm) -> &'a str {
    match form {
        TextForm::Train => item.prompt,
        TextForm::Test => crate::items::test_prompt(item.prompt),
    }
}

/// The user message of the chat format: the test prompt without ` to the nearest dollar` and
/// without the trailing `\n\nPrice is $`.
pub fn chat_user_message(test_prompt: &str) -> String {
    test_prompt.replace(" to the nearest dollar", "").replace(&format!("\n\n{PREFIX}"), "")
}

/// Writes rows `indices` of `table` in `format`.
pub fn export(table: &ItemTable, indices: &[usize], form: TextForm, format: ExportFormat, path: &Path) -> Result<()> {
    match format {
        ExportFormat::Parquet => {
            let texts: Vec<&str> = indices.iter().map(|&i| text_of(&table.get(i), form)).collect();
            let prices: Vec<f64> = indices.iter().map(|&i| table.prices()[i]).collect();
            write_parquet(path, &[("text", Column::Str(&texts))], &[("price", &prices)])
        }
        ExportFormat::Jsonl => write_atomic(path, |w| {
            #[derive(Serialize)]
            struct Row<'a> {
                text: &'a str,
                price: f64,
            }
            for &i in indices {
                let it = table.get(i);
                serde_json::to_writer(&mut *w, &Row { text: text_of(&it, form), price: it.price })?;
                w.write_all(b"\n")?;
            }
            Ok(())
        }),
        ExportFormat::Openai => write_atomic(path, |w| {
            for &i in indices {
                let it = table.get(i);
                let msg = serde_json::json!({"messages": [
                    {"role": "system", "content": SYSTEM_MESSAGE},
                    {"role": "user", "content": chat_user_message(it.test_prompt())},
                    {"role": "assistant", "content": format!("{PREFIX}{:.2}", it.price)},
                ]});
                serde_json::to_writer(&mut *w, &msg)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        }),
        ExportFormat::Csv => write_atomic(path, |w| {
            let mut csv = csv::Writer::from_writer(w);
            csv.write_record(["title", "category", "price", "token_count", "text"]).map_err(std::io::Error::other)?;
            for &i in indices {
                let it = table.get(i);
                csv.write_record([
                    it.title,
                    it.category,
                    &it.price.to_string(),
                    &it.token_count.to_string(),
                    text_of(&it, form),
                ])
                .map_err(std::io::Error::other)?;
            }
            csv.flush()
        }),
    }
}

/// Writes the curated items with all their fields (`.parquet`, else JSON lines).
pub fn write_items(table: &ItemTable, path: &Path) -> Result<()> {
    if path.to_string_lossy().to_ascii_lowercase().ends_with(".parquet") {
        let n = table.len();
        let titles: Vec<&str> = (0..n).map(|i| table.get(i).title).collect();
        let cats: Vec<&str> = (0..n).map(|i| table.get(i).category).collect();
        let details_owned: Vec<String> = (0..n).map(|i| table.get(i).details()).collect();
        let details: Vec<&str> = details_owned.iter().map(String::as_str).collect();
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

enum Column<'a> {
    Str(&'a [&'a str]),
}

const ROW_GROUP_ROWS: usize = 100_000;

fn write_parquet(path: &Path, str_cols: &[(&str, Column<'_>)], f64_cols: &[(&str, &[f64])]) -> Result<()> {
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
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
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
pub fn read_items(path: &Path) -> Result<(ItemTable, Vec<crate::load::LineError>)> {
    read_items_with(path, &crate::jobs::JobCtx::default())
}

/// [`read_items`] reporting progress (rows read) and stopping with `Cancelled` when asked.
pub fn read_items_with(path: &Path, ctx: &crate::jobs::JobCtx) -> Result<(ItemTable, Vec<crate::load::LineError>)> {
    use crate::load::LineError;
    let stage = format!(
        "reading {}",
        path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
    );
    // `total_rows` is known for Parquet (its metadata), 0 (unknown) for JSON lines.
    let tick = |i: usize, n_items: usize, total_rows: u64| -> Result<()> {
        if i.is_multiple_of(50_000) {
            ctx.check()?;
            ctx.report(&crate::jobs::Progress {
                stage: stage.clone(),
                done: i as u64,
                total: total_rows,
                n_items: n_items as u64,
            });
        }
        Ok(())
    };
    let mut table = ItemTable::new();
    let mut errors = Vec::new();
    let name = path.display().to_string();
    if path.to_string_lossy().to_ascii_lowercase().ends_with(".parquet") {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::record::Field;
        let perr = |e: parquet::errors::ParquetError| Error::Parquet { path: path.into(), message: e.to_string() };
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = SerializedFileReader::new(f).map_err(perr)?;
        let total_rows = reader.metadata().file_metadata().num_rows().max(0) as u64;
        for (i, row) in reader.get_row_iter(None).map_err(perr)?.enumerate() {
            tick(i, table.len(), total_rows)?;
            let row = row.map_err(perr)?;
            let mut item = crate::items::CuratedItem {
                title: String::new(),
                category: String::new(),
                price: f64::NAN,
                details: String::new(),
                prompt: String::new(),
                token_count: 0,
            };
            for (col, field) in row.get_column_iter() {
                match (col.as_str(), field) {
                    ("title", Field::Str(s)) => item.title = s.clone(),
                    ("category", Field::Str(s)) => item.category = s.clone(),
                    ("details", Field::Str(s)) => item.details = s.clone(),
                    ("prompt" | "text", Field::Str(s)) => item.prompt = s.clone(),
                    ("price", Field::Double(d)) => item.price = *d,
                    ("price", Field::Float(d)) => item.price = f64::from(*d),
                    ("token_count", Field::Double(d)) => item.token_count = *d as u32,
                    ("token_count", Field::Long(d)) => item.token_count = *d as u32,
                    ("token_count", Field::Int(d)) => item.token_count = *d as u32,
                    _ => {}
                }
            }
            if item.price.is_nan() || item.prompt.is_empty() {
                errors.push(LineError {
                    file: name.clone(),
                    line: i as u64 + 1,
                    message: "missing price or prompt".into(),
                });
                continue;
            }
            table.push(&item);
        }
    } else {
        use std::io::BufRead;
        let reader = crate::load::open_text(path)?;
        for (i, line) in reader.split(b'\n').enumerate() {
            tick(i, table.len(), 0)?;
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
