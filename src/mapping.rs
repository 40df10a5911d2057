//! How a user's table maps onto the curation's fields: the table's kind and CSV dialect, which
//! columns feed title, description, features, details, price and category ([`TableMapping`]: guessed
//! from column names, parsed from `--map`, validated against the schema, saved per column set), and
//! prices written as text ([`parse_price`]). Plain data and rules, no file access: the reader is
//! [`crate::table`].

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The kind of a table file, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// Comma-, tab-, semicolon- or pipe-separated text (`.csv`, `.tsv`, `.csv.gz`).
    Csv,
    /// Parquet.
    Parquet,
    /// JSON lines (`.jsonl`, `.ndjson`, `.json`, gzipped too).
    JsonLines,
    /// Arrow IPC file (`.arrow`, `.ipc`, `.feather`).
    Arrow,
}

impl TableKind {
    /// The kind of `path` from its extension (`None`: not a table this module reads).
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit_once('.').map(|(_, e)| e)?;
        Some(match ext {
            "csv" | "tsv" | "tab" | "psv" => Self::Csv,
            "parquet" | "pq" => Self::Parquet,
            "jsonl" | "ndjson" | "json" => Self::JsonLines,
            "arrow" | "ipc" | "feather" => Self::Arrow,
            _ => return None,
        })
    }

    /// Its name for people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Csv => "CSV",
            Self::Parquet => "Parquet",
            Self::JsonLines => "JSON lines",
            Self::Arrow => "Arrow IPC",
        }
    }
}

/// How a CSV file is written: separator, quote character, whether the first row names the columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvDialect {
    /// Field separator (`,`, `\t`, `;`, `|`).
    pub separator: u8,
    /// Quote character (`"` usually; `None`: fields are never quoted).
    pub quote: Option<u8>,
    /// Whether the first row holds the column names.
    pub has_header: bool,
}

impl Default for CsvDialect {
    fn default() -> Self {
        Self { separator: b',', quote: Some(b'"'), has_header: true }
    }
}

impl CsvDialect {
    /// Guesses the dialect from the first bytes of a file (after any BOM): the separator that
    /// splits the most records into the same number (> 1) of fields, quotes if a field starts with
    /// one, a header unless the first row holds a number or an empty name. `tsv` prefers tabs.
    pub fn sniff(sample: &[u8], prefer_tab: bool) -> Self {
        let sample = strip_bom(sample);
        let quote = if sample.contains(&b'"') { Some(b'"') } else { None };
        let mut best = (if prefer_tab { b'\t' } else { b',' }, 0usize);
        for sep in [b',', b'\t', b';', b'|'] {
            let counts = field_counts(sample, sep, quote, 50);
            if counts.is_empty() {
                continue;
            }
            let first = counts[0];
            if first < 2 {
                continue;
            }
            let same = counts.iter().filter(|&&c| c == first).count();
            // More consistent records first, then more fields; ties keep the preferred one.
            let score = same * 1000 + first.min(999);
            let preferred = sep == best.0;
            if score > best.1 || (score == best.1 && preferred) {
                best = (sep, score);
            }
        }
        let separator = best.0;
        let has_header = first_record(sample, separator, quote).is_none_or(|fields| {
            !fields.is_empty()
                && fields.iter().all(|f| !f.trim().is_empty() && parse_price(f, DecimalMark::Dot).is_none())
        });
        Self { separator, quote, has_header }
    }

    /// The separator as people write it (`,`, `tab`, `;`, `|`).
    pub fn separator_label(&self) -> String {
        if self.separator == b'\t' { "tab".into() } else { (self.separator as char).to_string() }
    }
}

/// `b` without a UTF-8 byte-order mark.
pub(crate) fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

/// Field counts of the first `max` complete records of `sample`.
fn field_counts(sample: &[u8], sep: u8, quote: Option<u8>, max: usize) -> Vec<usize> {
    let mut counts = Vec::new();
    let (mut fields, mut in_quote, mut nonblank) = (1usize, false, false);
    for &b in sample {
        if Some(b) == quote {
            in_quote = !in_quote;
            nonblank = true;
        } else if in_quote {
        } else if b == sep {
            fields += 1;
            nonblank = true;
        } else if b == b'\n' {
            if nonblank {
                counts.push(fields);
                if counts.len() == max {
                    break;
                }
            }
            (fields, nonblank) = (1, false);
        } else if b != b'\r' {
            nonblank = true;
        }
    }
    counts
}

/// The fields of the first record (unquoted), or `None` when the sample holds no whole record.
fn first_record(sample: &[u8], sep: u8, quote: Option<u8>) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = Vec::new();
    let mut in_quote = false;
    for &b in sample {
        if Some(b) == quote {
            in_quote = !in_quote;
        } else if !in_quote && b == sep {
            fields.push(String::from_utf8_lossy(&cur).into_owned());
            cur.clear();
        } else if !in_quote && b == b'\n' {
            if cur.last() == Some(&b'\r') {
                cur.pop();
            }
            fields.push(String::from_utf8_lossy(&cur).into_owned());
            return Some(fields);
        } else {
            cur.push(b);
        }
    }
    None
}

/// The decimal mark of prices written as text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecimalMark {
    /// `1,299.00` (`,` groups thousands).
    #[default]
    Dot,
    /// `1.299,00` (`.` or a space groups thousands).
    Comma,
}

/// A price written as text: currency symbols and codes (`$`, `€`, `USD`, …) and spaces stripped,
/// thousands separators dropped, the decimal mark read as given. `None` when it is not one number
/// (empty, `call for price`, a range `10 - 20`).
pub fn parse_price(s: &str, mark: DecimalMark) -> Option<f64> {
    parse_price_with(s, mark).or_else(|| {
        // Both marks present the other way round (`1.299,00` in a dot column): unambiguous.
        let (dot, comma) = (s.rfind('.'), s.rfind(','));
        let other = match (mark, dot, comma) {
            (DecimalMark::Dot, Some(d), Some(c)) if c > d => DecimalMark::Comma,
            (DecimalMark::Comma, Some(d), Some(c)) if d > c => DecimalMark::Dot,
            _ => return None,
        };
        parse_price_with(s, other)
    })
}

fn parse_price_with(s: &str, mark: DecimalMark) -> Option<f64> {
    let mut t = s.trim();
    // Currency codes or words at either end (`USD 12`, `12 EUR`, `Rs. 500`, `US$ 5`).
    for _ in 0..2 {
        let start = t.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let lead = t.len() - start.len();
        if (1..=3).contains(&lead) {
            t = start.trim_start_matches('.');
        }
        let end = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let trail = t.len() - end.len();
        if (1..=3).contains(&trail) {
            t = end;
        }
        t = t.trim_matches(|c: char| c.is_whitespace() || is_currency(c));
    }
    let (mut neg, mut out, mut digits) = (false, String::with_capacity(t.len()), 0);
    for (i, c) in t.char_indices() {
        match c {
            '0'..='9' => {
                out.push(c);
                digits += 1;
            }
            '-' | '−' if i == 0 => neg = true,
            '.' | ',' => {
                let decimal = match mark {
                    DecimalMark::Dot => '.',
                    DecimalMark::Comma => ',',
                };
                if c == decimal {
                    out.push('.');
                } else if c == ',' || c == '.' {
                    // A thousands separator: exactly three digits must follow.
                    let rest = &t[i + 1..];
                    let next3 = rest.bytes().take_while(u8::is_ascii_digit).count();
                    if next3 != 3 || digits == 0 {
                        return None;
                    }
                }
            }
            '\'' | ' ' | '\u{a0}' | '\u{202f}' | '_' => {
                if digits == 0 {
                    return None;
                }
            }
            c if is_currency(c) => {}
            _ => return None,
        }
    }
    if digits == 0 || out.matches('.').count() > 1 {
        return None;
    }
    let v: f64 = out.parse().ok()?;
    let v = if neg { -v } else { v };
    v.is_finite().then_some(v)
}

fn is_currency(c: char) -> bool {
    matches!(
        c,
        '$' | '€'
            | '£'
            | '¥'
            | '₹'
            | '₩'
            | '₽'
            | '₺'
            | '₴'
            | '₦'
            | '฿'
            | '₫'
            | '₱'
            | '¢'
            | '₪'
            | '¤'
            | 'ƒ'
    )
}

/// Where the details object comes from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetailsMapping {
    /// No details.
    #[default]
    None,
    /// A column holding a JSON object per row (text, or a nested struct).
    Json(String),
    /// These columns gathered into `{"column": value, …}` in their table order (empty cells left out).
    Columns(Vec<String>),
}

/// Where an item's category comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CategoryMapping {
    /// A column (its values normalised like `main_category`: `Tools & Home` → `Tools_and_Home`).
    Column(String),
    /// One name for every row of the file.
    Name(String),
}

impl Default for CategoryMapping {
    fn default() -> Self {
        Self::Name("Unknown".into())
    }
}

/// Which columns feed the curation's fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableMapping {
    /// The title column.
    pub title: Option<String>,
    /// Description columns, joined like the original's description lines (one line each; a list
    /// column gives its elements).
    pub description: Vec<String>,
    /// Feature columns (the bullet lines), joined the same way.
    pub features: Vec<String>,
    /// The details object.
    pub details: DetailsMapping,
    /// The price column (numbers, or text like `$1,299.00`).
    pub price: Option<String>,
    /// The decimal mark of prices written as text.
    pub decimal: DecimalMark,
    /// The category.
    pub category: CategoryMapping,
}

/// The field names of `--map`, in the curation's order.
pub const FIELDS: [&str; 6] = ["title", "description", "features", "details", "price", "category"];

impl TableMapping {
    /// Every column the mapping reads, without repeats.
    pub fn columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        let mut add = |c: &String| {
            if !cols.contains(c) {
                cols.push(c.clone());
            }
        };
        self.title.iter().for_each(&mut add);
        self.description.iter().for_each(&mut add);
        self.features.iter().for_each(&mut add);
        match &self.details {
            DetailsMapping::None => {}
            DetailsMapping::Json(c) => add(c),
            DetailsMapping::Columns(cs) => cs.iter().for_each(&mut add),
        }
        self.price.iter().for_each(&mut add);
        if let CategoryMapping::Column(c) = &self.category {
            add(c);
        }
        cols
    }

    /// Guesses a mapping from column names (`name`, `product_name`, `list_price`, `desc`, …) and
    /// sample values (a details column of JSON objects; the decimal mark of text prices). A
    /// category column when one is named so, else `default_category` for the whole file.
    pub fn guess(schema: &TableSchema, default_category: &str) -> Self {
        let names: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
        let mut used = vec![false; names.len()];
        let norm: Vec<String> = names.iter().map(|n| normalize_name(n)).collect();
        let pick = |cands: &[&str], loose: &[&str], used: &mut Vec<bool>| -> Option<usize> {
            for c in cands {
                if let Some(i) = (0..names.len()).find(|&i| !used[i] && norm[i] == *c) {
                    used[i] = true;
                    return Some(i);
                }
            }
            for c in loose {
                if let Some(i) = (0..names.len()).find(|&i| !used[i] && norm[i].split('_').any(|w| w == *c)) {
                    used[i] = true;
                    return Some(i);
                }
            }
            None
        };
        let price = pick(
            &[
                "price",
                "list_price",
                "sale_price",
                "selling_price",
                "current_price",
                "retail_price",
                "price_usd",
                "unit_price",
                "final_price",
                "actual_price",
                "regular_price",
                "mrp",
                "amount",
                "cost",
                "preis",
                "prix",
                "precio",
                "prezzo",
                "preco",
            ],
            &["price", "cost", "amount", "preis", "prix", "precio"],
            &mut used,
        );
        let title = pick(
            &[
                "title",
                "name",
                "product_name",
                "product_title",
                "item_name",
                "item_title",
                "productname",
                "product",
                "item",
                "label",
                "bezeichnung",
                "artikel",
                "nom",
                "nombre",
            ],
            &["title", "name"],
            &mut used,
        );
        let details = pick(
            &[
                "details",
                "attributes",
                "specs",
                "specifications",
                "properties",
                "product_details",
                "attrs",
                "specs_json",
            ],
            &["details", "attributes", "specs", "specifications"],
            &mut used,
        );
        let features = pick(
            &["features", "feature", "bullet_points", "bullets", "highlights", "key_features", "about_this_item"],
            &["features", "bullets", "highlights"],
            &mut used,
        );
        let description = pick(
            &[
                "description",
                "desc",
                "product_description",
                "long_description",
                "full_description",
                "description_text",
                "body",
                "body_html",
                "summary",
                "overview",
                "about",
                "text",
                "details_text",
                "beschreibung",
                "descripcion",
            ],
            &["description", "desc"],
            &mut used,
        );
        let category = pick(
            &[
                "main_category",
                "category",
                "categories",
                "category_name",
                "product_category",
                "department",
                "product_type",
                "type",
                "group",
                "segment",
            ],
            &["category", "department", "dept"],
            &mut used,
        );
        let col = |i: Option<usize>| i.map(|i| names[i].clone());
        let details = match details {
            None => DetailsMapping::None,
            Some(i) if schema.columns[i].looks_like_json_object() => DetailsMapping::Json(names[i].clone()),
            Some(i) => DetailsMapping::Columns(vec![names[i].clone()]),
        };
        let decimal = price.map_or(DecimalMark::Dot, |i| guess_decimal(&schema.columns[i].samples));
        Self {
            title: col(title),
            description: col(description).into_iter().collect(),
            features: col(features).into_iter().collect(),
            details,
            price: col(price),
            decimal,
            category: match col(category) {
                Some(c) => CategoryMapping::Column(c),
                None => CategoryMapping::Name(default_category.to_owned()),
            },
        }
    }

    /// Applies `--map` text (`title=COL,description=COL+COL,price=COL,category=COL|=NAME,
    /// details=COL+COL,decimal=comma`) over this mapping: named fields replace the guess, `field=`
    /// clears one. A single details column whose samples are JSON objects is read as JSON.
    pub fn apply_map(&mut self, text: &str, schema: &TableSchema) -> Result<()> {
        let bad = |m: String| Error::InvalidInput(m);
        let (price_before, mut decimal_given) = (self.price.clone(), false);
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("--map: `{part}` is not FIELD=COLUMN (fields: {})", FIELDS.join(", "))))?;
            let (key, value) = (key.trim(), value.trim());
            let cols = || -> Vec<String> {
                value.split('+').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect()
            };
            match key {
                "title" => self.title = (!value.is_empty()).then(|| value.to_owned()),
                "description" => self.description = cols(),
                "features" => self.features = cols(),
                "price" => self.price = (!value.is_empty()).then(|| value.to_owned()),
                "details" => {
                    let cs = cols();
                    self.details = match cs.as_slice() {
                        [] => DetailsMapping::None,
                        [one] if schema.column(one).is_some_and(ColumnInfo::looks_like_json_object) => {
                            DetailsMapping::Json(one.clone())
                        }
                        _ => DetailsMapping::Columns(cs),
                    }
                }
                "category" => {
                    self.category = match value.strip_prefix('=') {
                        Some(name) => CategoryMapping::Name(name.trim().to_owned()),
                        None if value.is_empty() => CategoryMapping::default(),
                        None => CategoryMapping::Column(value.to_owned()),
                    }
                }
                "decimal" => {
                    decimal_given = true;
                    self.decimal = match value {
                        "," | "comma" => DecimalMark::Comma,
                        "." | "dot" => DecimalMark::Dot,
                        _ => return Err(bad(format!("--map: decimal={value}: use dot or comma"))),
                    }
                }
                _ => return Err(bad(format!("--map: unknown field `{key}` (fields: {}, decimal)", FIELDS.join(", ")))),
            }
        }
        if !decimal_given && self.price != price_before {
            // Another price column: its own decimal mark.
            let samples = self.price.as_deref().and_then(|p| schema.column(p)).map(|c| c.samples.clone());
            self.decimal = guess_decimal(&samples.unwrap_or_default());
        }
        Ok(())
    }

    /// The mapping as `--map` text (what `pricer inspect` prints).
    pub fn to_map_string(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &self.title {
            parts.push(format!("title={t}"));
        }
        if !self.description.is_empty() {
            parts.push(format!("description={}", self.description.join("+")));
        }
        if !self.features.is_empty() {
            parts.push(format!("features={}", self.features.join("+")));
        }
        match &self.details {
            DetailsMapping::None => {}
            DetailsMapping::Json(c) => parts.push(format!("details={c}")),
            DetailsMapping::Columns(cs) => parts.push(format!("details={}", cs.join("+"))),
        }
        if let Some(p) = &self.price {
            parts.push(format!("price={p}"));
        }
        match &self.category {
            CategoryMapping::Column(c) => parts.push(format!("category={c}")),
            CategoryMapping::Name(n) => parts.push(format!("category=={n}")),
        }
        if self.decimal == DecimalMark::Comma {
            parts.push("decimal=comma".into());
        }
        parts.join(",")
    }

    /// Checks the mapping against the file's columns: a price column and at least one text field
    /// are needed, and every named column must exist. The error names what is missing and the
    /// columns there are.
    pub fn validate(&self, schema: &TableSchema) -> Result<()> {
        let names = || schema.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
        let file = &schema.name;
        if self.price.is_none() {
            return Err(Error::InvalidInput(format!(
                "{file}: no column is mapped to the price (columns: {}); name one with --map price=COLUMN",
                names()
            )));
        }
        if self.title.is_none() && self.description.is_empty() && self.features.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{file}: no column is mapped to the title, the description or the features (columns: {}); \
                 name one with --map title=COLUMN",
                names()
            )));
        }
        for c in self.columns() {
            if schema.column(&c).is_none() {
                return Err(Error::InvalidInput(format!("{file}: no column `{c}` (columns: {})", names())));
            }
        }
        Ok(())
    }
}

fn normalize_name(n: &str) -> String {
    let mut s = String::with_capacity(n.len());
    for c in n.trim().chars() {
        if c.is_alphanumeric() {
            s.extend(c.to_lowercase());
        } else if !s.ends_with('_') {
            s.push('_');
        }
    }
    s.trim_matches('_').to_owned()
}

fn guess_decimal(samples: &[String]) -> DecimalMark {
    let ends = |s: &str, mark: char| {
        let t = s.trim_end_matches(|c: char| !c.is_ascii_digit());
        t.rfind(|c: char| !c.is_ascii_digit())
            .is_some_and(|i| t[i..].starts_with(mark) && (1..=2).contains(&(t.len() - i - 1)))
    };
    let comma = samples.iter().filter(|s| ends(s, ',')).count();
    let dot = samples.iter().filter(|s| ends(s, '.')).count();
    if comma > dot { DecimalMark::Comma } else { DecimalMark::Dot }
}

/// One column as [`inspect`] saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// Its name (`column_1`, … when the CSV has no header row).
    pub name: String,
    /// Its type as polars read it (CSV columns are typed on the rows inspected).
    pub dtype: String,
    /// Empty cells among the rows inspected.
    pub nulls: usize,
    /// The first non-empty values, shortened.
    pub samples: Vec<String>,
}

impl ColumnInfo {
    /// Whether the non-empty samples are JSON objects (a details column), or the type is a struct.
    pub fn looks_like_json_object(&self) -> bool {
        self.dtype.starts_with("struct")
            || (!self.samples.is_empty() && self.samples.iter().all(|s| s.trim_start().starts_with('{')))
    }
}

/// A table's schema, from its first rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    /// The file name.
    pub name: String,
    /// Its kind.
    pub kind: TableKind,
    /// The CSV dialect (sniffed or given).
    pub dialect: Option<CsvDialect>,
    /// Its columns in table order.
    pub columns: Vec<ColumnInfo>,
    /// Rows inspected.
    pub rows: usize,
    /// Whether those were all the rows of the file.
    pub whole_file: bool,
    /// Records among them that could not be read (another separator may fit).
    #[serde(default)]
    pub unreadable: usize,
    /// The first of those, as `file:line: reason`.
    #[serde(default)]
    pub first_unreadable: Vec<String>,
}

impl TableSchema {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The column names joined by `|` (the key under which a mapping is saved and reused).
    pub fn signature(&self) -> String {
        self.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join("|")
    }

    /// A printable table: name, type, nulls, samples.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} ({}{}): {} columns, {} {}rows inspected\n",
            self.name,
            self.kind.label(),
            self.dialect.map_or(String::new(), |d| format!(
                ", separator {}, {}",
                d.separator_label(),
                if d.has_header { "header row" } else { "no header row" }
            )),
            self.columns.len(),
            self.rows,
            if self.whole_file { "(all) " } else { "first " }
        );
        if self.unreadable > 0 {
            s.push_str(&format!("  {} records could not be read, e.g.\n", self.unreadable));
            for e in &self.first_unreadable {
                s.push_str(&format!("    {e}\n"));
            }
        }
        let w = self.columns.iter().map(|c| c.name.chars().count()).max().unwrap_or(4).max(6);
        s.push_str(&format!("  {:<w$}  {:<12} {:>6}  samples\n", "column", "type", "nulls"));
        for c in &self.columns {
            s.push_str(&format!("  {:<w$}  {:<12} {:>6}  {}\n", c.name, c.dtype, c.nulls, c.samples.join(" | ")));
        }
        s
    }
}

/// What [`read_source`] needs to read a table: its kind, dialect and mapping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    /// The kind of file.
    pub kind: TableKind,
    /// The CSV dialect.
    pub dialect: Option<CsvDialect>,
    /// The mapping.
    pub mapping: TableMapping,
}

/// Mappings saved for reuse, keyed by a table's column names ([`TableSchema::signature`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedMappings {
    /// (signature, mapping), newest first.
    pub entries: Vec<(String, TableSpec)>,
}

impl SavedMappings {
    /// How many are kept.
    pub const MAX: usize = 32;

    /// The saved spec for these columns.
    pub fn get(&self, schema: &TableSchema) -> Option<&TableSpec> {
        let sig = schema.signature();
        self.entries.iter().find(|(s, _)| *s == sig).map(|(_, m)| m)
    }

    /// Saves (or replaces) the spec for these columns.
    pub fn put(&mut self, schema: &TableSchema, spec: TableSpec) {
        let sig = schema.signature();
        self.entries.retain(|(s, _)| *s != sig);
        self.entries.insert(0, (sig, spec));
        self.entries.truncate(Self::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_in_both_decimal_marks() {
        assert_eq!(parse_price("$1,299.00", DecimalMark::Dot), Some(1299.0));
        assert_eq!(parse_price("1.299,00 €", DecimalMark::Comma), Some(1299.0));
        assert_eq!(parse_price("1 299,50 €", DecimalMark::Comma), Some(1299.5));
        assert_eq!(parse_price("USD 12.5", DecimalMark::Dot), Some(12.5));
        assert_eq!(parse_price("12", DecimalMark::Comma), Some(12.0));
        assert_eq!(parse_price("£0.99", DecimalMark::Dot), Some(0.99));
        assert_eq!(parse_price("call for price", DecimalMark::Dot), None);
        assert_eq!(parse_price("10 - 20", DecimalMark::Dot), None);
        assert_eq!(parse_price("1,2", DecimalMark::Dot), None);
        assert_eq!(parse_price("", DecimalMark::Dot), None);
        assert_eq!(parse_price("1.299,00 €", DecimalMark::Dot), Some(1299.0));
        assert_eq!(parse_price("$1,299.00", DecimalMark::Comma), Some(1299.0));
    }
}
