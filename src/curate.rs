//! Curation of raw records into prompt/price items, exactly as the reference pipeline
//! (design.md §4), with options beside the defaults, a report of what was dropped and why, and a
//! parallel streaming driver with progress and cancellation.

use crate::items::{CuratedItem, ItemTable, PREFIX, QUESTION};
use crate::jobs::{JobCtx, Progress};
use crate::load::{Chunk, LineError, RawRecord, ReadOptions, Source, normalize_category, parse_line};
use crate::table::{CategoryMapping, TableHead, TableMapping};
use crate::text::{prefix_at_word_boundary, py_len, py_prefix, scrub, scrub_details};
use crate::tokenizer::PriceTokenizer;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Curation limits. The default is the original pipeline; every other value is an option.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CurateOptions {
    /// Keep only texts with more than this many tokens (150).
    pub min_tokens: usize,
    /// Cut texts to this many tokens (160).
    pub max_tokens: usize,
    /// Keep only contents longer than this many characters (300).
    pub min_chars: usize,
    /// Cut contents to this many characters (1120).
    pub ceiling_chars: usize,
    /// Lowest price kept, inclusive (0.5).
    pub min_price_usd: f64,
    /// Highest price kept, inclusive (999.49).
    pub max_price_usd: f64,
    /// Cut at word boundaries instead of mid-word (off in the original).
    pub word_boundary: bool,
}

impl Default for CurateOptions {
    fn default() -> Self {
        Self {
            min_tokens: 150,
            max_tokens: 160,
            min_chars: 300,
            ceiling_chars: 1120,
            min_price_usd: 0.5,
            max_price_usd: 999.49,
            word_boundary: false,
        }
    }
}

/// Why a record was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Price missing or not a number.
    NoPrice,
    /// Price outside the kept range.
    OutOfRange,
    /// Contents not longer than `min_chars`.
    TooShort,
    /// Text not longer than `min_tokens` tokens.
    TooFewTokens,
}

/// Counts of a curation run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CurationReport {
    /// Non-blank lines (or rows) read.
    pub lines_read: u64,
    /// Items kept.
    pub kept: u64,
    /// Dropped: price missing or unparsable.
    pub no_price: u64,
    /// Dropped: price out of range.
    pub out_of_range: u64,
    /// Dropped: contents too short.
    pub too_short: u64,
    /// Dropped: too few tokens.
    pub too_few_tokens: u64,
    /// Lines that could not be parsed (bad JSON, wrong types, invalid UTF-8, too long).
    pub malformed: u64,
    /// The first malformed lines, with file and line number.
    pub first_errors: Vec<String>,
    /// Whole-file problems (unreadable, truncated gzip); items read before them were kept.
    pub file_errors: Vec<String>,
    /// Whether the run was cancelled before the end (the counts cover what was read).
    pub cancelled: bool,
    /// Cells of a user's table that could not be read (a price that is not a number); their rows
    /// were curated without them.
    #[serde(default)]
    pub column_problems: u64,
    /// The first of them, with file and row (line) number.
    #[serde(default)]
    pub first_column_problems: Vec<String>,
}

pub use crate::load::MAX_REPORTED_ERRORS;

impl CurationReport {
    /// Counts a file of curated items read as it is: its items as kept, its bad rows as malformed.
    pub fn absorb_items_file(&mut self, file: &crate::items_io::ItemsFile) {
        self.lines_read += file.table.len() as u64 + file.malformed.len() as u64;
        self.kept += file.table.len() as u64;
        for e in &file.malformed {
            self.add_error(e);
        }
    }

    fn add_error(&mut self, e: &LineError) {
        self.malformed += 1;
        if self.first_errors.len() < MAX_REPORTED_ERRORS {
            self.first_errors.push(e.to_string());
        }
    }

    fn add_column_problem(&mut self, p: &LineError) {
        self.column_problems += 1;
        if self.first_column_problems.len() < MAX_REPORTED_ERRORS {
            self.first_column_problems.push(p.to_string());
        }
    }

    fn add_drop(&mut self, reason: DropReason) {
        match reason {
            DropReason::NoPrice => self.no_price += 1,
            DropReason::OutOfRange => self.out_of_range += 1,
            DropReason::TooShort => self.too_short += 1,
            DropReason::TooFewTokens => self.too_few_tokens += 1,
        }
    }

    /// Adds the counts and messages of another report (several inputs, one dataset).
    pub fn absorb(&mut self, other: CurationReport) {
        self.lines_read += other.lines_read;
        self.kept += other.kept;
        self.no_price += other.no_price;
        self.out_of_range += other.out_of_range;
        self.too_short += other.too_short;
        self.too_few_tokens += other.too_few_tokens;
        self.malformed += other.malformed;
        self.first_errors.extend(other.first_errors);
        self.first_errors.truncate(MAX_REPORTED_ERRORS);
        self.file_errors.extend(other.file_errors);
        self.cancelled |= other.cancelled;
        self.column_problems += other.column_problems;
        self.first_column_problems.extend(other.first_column_problems);
        self.first_column_problems.truncate(MAX_REPORTED_ERRORS);
    }

    /// Multi-line human summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "read {} lines, kept {} items; dropped: {} no price, {} out of range, {} too short, {} too few tokens, {} malformed",
            self.lines_read,
            self.kept,
            self.no_price,
            self.out_of_range,
            self.too_short,
            self.too_few_tokens,
            self.malformed
        );
        for e in &self.first_errors {
            s.push_str("\n  malformed: ");
            s.push_str(e);
        }
        if self.malformed > self.first_errors.len() as u64 {
            s.push_str(&format!("\n  … and {} more malformed lines", self.malformed - self.first_errors.len() as u64));
        }
        if self.column_problems > 0 {
            s.push_str(&format!("\n  {} cells could not be read:", self.column_problems));
            for e in &self.first_column_problems {
                s.push_str("\n    ");
                s.push_str(e);
            }
            if self.column_problems > self.first_column_problems.len() as u64 {
                s.push_str(&format!(
                    "\n    … and {} more",
                    self.column_problems - self.first_column_problems.len() as u64
                ));
            }
        }
        for e in &self.file_errors {
            s.push_str("\n  file error: ");
            s.push_str(e);
        }
        if self.cancelled {
            s.push_str("\n  cancelled before the end");
        }
        s
    }
}

/// The curator: tokenizer + options, applied record by record.
#[derive(Clone, Debug)]
pub struct Curator {
    tokenizer: Arc<PriceTokenizer>,
    options: CurateOptions,
    question_tokens: usize,
}

impl Curator {
    /// A curator with the given tokenizer and options.
    pub fn new(tokenizer: Arc<PriceTokenizer>, options: CurateOptions) -> Result<Self> {
        let question_tokens = tokenizer.count(&format!("{QUESTION}\n\n"))?;
        Ok(Self { tokenizer, options, question_tokens })
    }

    /// The original pipeline: Llama 3.1 and default limits.
    pub fn original() -> Result<Self> {
        Self::new(PriceTokenizer::llama31()?, CurateOptions::default())
    }

    /// The tokenizer in use.
    pub fn tokenizer(&self) -> &Arc<PriceTokenizer> {
        &self.tokenizer
    }

    /// The options in use.
    pub fn options(&self) -> &CurateOptions {
        &self.options
    }

    /// The contents string of a record (§4 step 2–3), before the length rules.
    pub fn contents(rec: &RawRecord) -> String {
        let mut contents = rec.description.join("\n");
        if !contents.is_empty() {
            contents.push('\n');
        }
        let features = rec.features.join("\n");
        if !features.is_empty() {
            contents.push_str(&features);
            contents.push('\n');
        }
        if !rec.details.is_empty() {
            contents.push_str(&scrub_details(&rec.details));
            contents.push('\n');
        }
        contents
    }

    /// Curates one record under `category`. `Ok(None)`-free: either an item or why not.
    pub fn curate(&self, rec: &RawRecord, category: &str) -> Result<std::result::Result<CuratedItem, DropReason>> {
        let o = &self.options;
        let Some(price) = rec.price.parse() else { return Ok(Err(DropReason::NoPrice)) };
        if !(o.min_price_usd <= price && price <= o.max_price_usd) {
            return Ok(Err(if price.is_nan() { DropReason::NoPrice } else { DropReason::OutOfRange }));
        }
        let contents = Self::contents(rec);
        if py_len(&contents) <= o.min_chars {
            return Ok(Err(DropReason::TooShort));
        }
        let contents = if o.word_boundary {
            prefix_at_word_boundary(&contents, o.ceiling_chars)
        } else {
            py_prefix(&contents, o.ceiling_chars)
        };
        let text = format!("{}\n{}", scrub(&rec.title), scrub(contents));
        let (ids, ends) = if o.word_boundary {
            self.tokenizer.encode_with_ends(&text)?
        } else {
            (self.tokenizer.encode(&text)?, Vec::new())
        };
        if ids.len() <= o.min_tokens {
            return Ok(Err(DropReason::TooFewTokens));
        }
        let kept = &ids[..ids.len().min(o.max_tokens)];
        let mut body = self.tokenizer.decode(kept)?;
        if o.word_boundary && kept.len() < ids.len() {
            let next_starts_word = text[ends[kept.len() - 1]..].starts_with(char::is_whitespace);
            if !next_starts_word && let Some(i) = body.rfind(char::is_whitespace) {
                body.truncate(i);
            }
        }
        let dollars = price.round_ties_even();
        let suffix = format!("\n\n{PREFIX}{dollars:.0}.00");
        // The question ends in "?\n\n", a pre-token of its own, so the prompt's count is the
        // question's plus the rest's; the rest reuses the first encoding where it provably can
        // (both checked against full re-encoding in the tests).
        let token_count = self.question_tokens + self.tokenizer.count_continuation(&text, kept, &body, &suffix)?;
        let prompt = format!("{QUESTION}\n\n{body}{suffix}");
        Ok(Ok(CuratedItem {
            title: rec.title.clone(),
            category: category.to_owned(),
            price,
            details: rec.details.clone(),
            prompt,
            token_count: token_count as u32,
        }))
    }

    /// Curates every source into a table, in input order, reading in bounded chunks on a
    /// reader thread and curating each chunk in parallel. Cancellation keeps what was curated.
    pub fn curate_sources(
        &self,
        sources: &[Source],
        read: ReadOptions,
        ctx: &JobCtx,
    ) -> Result<(ItemTable, CurationReport)> {
        let total_bytes: u64 = sources.iter().map(Source::size).sum();
        let counter = Arc::new(AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
        let mut table = ItemTable::new();
        let mut report = CurationReport::default();
        let cancel = ctx.cancel.clone();
        std::thread::scope(|scope| -> Result<()> {
            let reader_counter = counter.clone();
            std::thread::Builder::new()
                .name("curate-reader".into())
                .spawn_scoped(scope, move || {
                    let mut send = |chunk| !cancel.is_cancelled() && tx.send(chunk).is_ok();
                    for (si, src) in sources.iter().enumerate() {
                        let go = match &src.table {
                            Some(spec) => crate::table::read_source(si, src, spec, &reader_counter, &mut send),
                            None => crate::load::read_source(si, src, read, &reader_counter, &mut send),
                        };
                        if !go {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::InvalidInput(format!("cannot start reader thread: {e}")))?;
            for chunk in rx {
                if ctx.cancel.is_cancelled() {
                    report.cancelled = true;
                    break;
                }
                let done = match &chunk {
                    Chunk::Lines { bytes_read, .. } | Chunk::Records { bytes_read, .. } => *bytes_read,
                    Chunk::FileError { .. } => counter.load(Ordering::Relaxed),
                };
                self.absorb_chunk(chunk, sources, &mut table, &mut report)?;
                ctx.report(&Progress {
                    stage: "curating".into(),
                    done,
                    total: total_bytes,
                    n_items: table.len() as u64,
                });
            }
            Ok(())
        })?;
        table.shrink_to_fit();
        Ok((table, report))
    }

    fn absorb_chunk(
        &self,
        chunk: Chunk,
        sources: &[Source],
        table: &mut ItemTable,
        report: &mut CurationReport,
    ) -> Result<()> {
        type Outcome = Result<std::result::Result<std::result::Result<CuratedItem, DropReason>, LineError>>;
        let outcomes: Vec<Outcome> = match chunk {
            Chunk::FileError { message, .. } => {
                report.file_errors.push(message);
                return Ok(());
            }
            Chunk::Lines { source, buf, spans, errors, .. } => {
                let src = &sources[source];
                let mut outcomes: Vec<(u64, Outcome)> = spans
                    .par_iter()
                    .filter(|(s, e, _)| !buf[*s..*e].iter().all(u8::is_ascii_whitespace))
                    .map(|&(s, e, line)| {
                        let outcome = match parse_line(&buf[s..e]) {
                            Ok(rec) => self.curate(&rec, &category_of(src, &rec)).map(Ok),
                            Err(message) => Ok(Err(LineError { file: src.name.clone(), line, message })),
                        };
                        (line, outcome)
                    })
                    .collect();
                if !errors.is_empty() {
                    // Lines rejected by the reader (too long) take their place in line order.
                    outcomes.extend(errors.into_iter().map(|e| (e.line, Ok(Err(e)))));
                    outcomes.sort_by_key(|(line, _)| *line);
                }
                outcomes.into_iter().map(|(_, o)| o).collect()
            }
            Chunk::Records { source, rows, problems, .. } => {
                for p in &problems {
                    report.add_column_problem(p);
                }
                let src = &sources[source];
                rows.into_par_iter()
                    .map(|(line, rec)| match rec {
                        Ok(rec) => self.curate(&rec, &category_of(src, &rec)).map(Ok),
                        Err(message) => Ok(Err(LineError { file: src.name.clone(), line, message })),
                    })
                    .collect()
            }
        };
        for outcome in outcomes {
            report.lines_read += 1;
            match outcome? {
                Ok(Ok(item)) => {
                    report.kept += 1;
                    table.push(&item);
                }
                Ok(Err(reason)) => report.add_drop(reason),
                Err(e) => report.add_error(&e),
            }
        }
        Ok(())
    }
}

fn category_of(src: &Source, rec: &RawRecord) -> String {
    category_for(src.category.as_deref(), rec)
}

/// An item's category: the one given for the whole input, else the record's `main_category`
/// written like a dataset name, else `Unknown`.
fn category_for(fixed: Option<&str>, rec: &RawRecord) -> String {
    match (fixed, &rec.main_category) {
        (Some(c), _) => c.to_owned(),
        (None, Some(m)) if !m.trim().is_empty() => normalize_category(m),
        _ => "Unknown".to_owned(),
    }
}

/// What a mapping makes of a table's first rows: the first items, and counts of what was kept and
/// dropped (the mapping dialog's live preview).
#[derive(Clone, Debug, Default)]
pub struct Preview {
    /// Rows curated.
    pub rows: usize,
    /// The first items kept (with their row numbers).
    pub items: Vec<(u64, crate::items::CuratedItem)>,
    /// Counts of the rows, as a curation report.
    pub report: CurationReport,
}

/// Items shown by [`preview`].
pub const PREVIEW_ITEMS: usize = 5;

/// Curates the first `n_rows` rows of `head` with `mapping` (the same rules as a whole curation).
pub fn preview(head: &TableHead, mapping: &TableMapping, curator: &Curator, n_rows: usize) -> Preview {
    let n = n_rows.min(head.frame.height());
    let frame = head.frame.head(Some(n));
    let (recs, problems) =
        crate::table::records(&frame, &head.rows[..n], head.raw.as_deref(), mapping, &head.schema.name);
    let mut p = Preview { rows: n, ..Preview::default() };
    let r = &mut p.report;
    r.lines_read = n as u64;
    for problem in &problems {
        r.add_column_problem(problem);
    }
    let fixed = match &mapping.category {
        CategoryMapping::Name(name) => Some(name.as_str()),
        CategoryMapping::Column(_) => None,
    };
    let file = &head.schema.name;
    for (row, rec) in recs {
        let outcome = rec.map_err(|message| LineError { file: file.clone(), line: row, message }).and_then(|rec| {
            curator.curate(&rec, &category_for(fixed, &rec)).map_err(|e| LineError {
                file: file.clone(),
                line: row,
                message: e.to_string(),
            })
        });
        match outcome {
            Ok(Ok(item)) => {
                r.kept += 1;
                if p.items.len() < PREVIEW_ITEMS {
                    p.items.push((row, item));
                }
            }
            Ok(Err(reason)) => r.add_drop(reason),
            Err(e) => r.add_error(&e),
        }
    }
    p
}
