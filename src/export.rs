//! The training exports of design.md §3: Parquet `text`,`price`; JSON lines of the same; OpenAI
//! chat JSONL; CSV. Every file is written atomically ([`crate::atomic`]).

use crate::Result;
use crate::atomic::write_atomic;
use crate::items::{ItemRef, ItemTable, PREFIX};
use crate::items_io::{Column, write_parquet};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// System message of the chat format.
pub const SYSTEM_MESSAGE: &str = "You estimate prices of items. Reply only with the price, no explanation";

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
