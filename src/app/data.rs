//! The loaded dataset as the app sees it: an immutable snapshot (items, curation report,
//! statistics, slot × category counts, density grid) built off the UI thread, and the loaders
//! that make one from files or from the built-in demo. No egui here.

use crate::curate::{CurationReport, Curator};
use crate::items::ItemTable;
use crate::jobs::{JobCtx, Progress};
use crate::load::{InputFormat, ReadOptions, Source};
use crate::sampling::SlotCategoryCounts;
use crate::stats::TableStats;
use crate::view::{DensityGrid, density_grid};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Columns × rows of the price-vs-length density grid.
pub const DENSITY_SIZE: (usize, usize) = (200, 120);

/// An immutable, shareable snapshot of loaded items and everything derived from them.
pub struct Dataset {
    /// Display name (file names, or "synthetic demo").
    pub name: String,
    /// Whether this is the synthetic demo (shown as a badge).
    pub synthetic: bool,
    /// The items.
    pub table: ItemTable,
    /// How curation went (empty for files of already curated items).
    pub report: CurationReport,
    /// Statistics over all rows.
    pub stats: TableStats,
    /// Slot × category counts at $1 slots (drives the sampling preview).
    pub counts: SlotCategoryCounts,
    /// Density of price vs. prompt length over all rows.
    pub density: DensityGrid,
}

impl Dataset {
    /// Derives statistics, counts and the density grid from a table.
    pub fn build(name: String, synthetic: bool, table: ItemTable, report: CurationReport) -> Self {
        let stats = TableStats::of(&table);
        let counts = SlotCategoryCounts::from_table(&table, 1.0);
        let density = density_grid(&table, DENSITY_SIZE.0, DENSITY_SIZE.1);
        Self { name, synthetic, table, report, stats, counts, density }
    }
}

/// Whether a file holds curated items (a `prompt` field) rather than raw metadata.
pub fn is_items_file(path: &Path) -> anyhow::Result<bool> {
    let name = path.to_string_lossy().to_string();
    match InputFormat::from_name(&name) {
        InputFormat::Parquet => {
            use parquet::file::reader::{FileReader, SerializedFileReader};
            let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let reader =
                SerializedFileReader::new(f).with_context(|| format!("{} is not a Parquet file", path.display()))?;
            let schema = reader.metadata().file_metadata().schema_descr_ptr();
            Ok(schema.columns().iter().any(|c| c.name() == "prompt"))
        }
        _ => {
            use std::io::BufRead;
            let reader = crate::load::open_text(path)?;
            for line in reader.split(b'\n').take(50) {
                let Ok(line) = line else { return Ok(false) };
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&line)
                    .map(|m| m.contains_key("prompt"))
                    .unwrap_or(false));
            }
            Ok(false)
        }
    }
}

/// Loads files: curated items are read as they are, raw metadata is curated. Fails (keeping
/// nothing) when no item comes out; line problems are in the report.
pub fn load_paths(paths: &[PathBuf], ctx: &JobCtx) -> anyhow::Result<Dataset> {
    if paths.is_empty() {
        bail!("no file given");
    }
    for p in paths {
        if !p.exists() {
            bail!("{}: no such file", p.display());
        }
    }
    let name = paths
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    let mut raw = Vec::new();
    let mut table = ItemTable::new();
    let mut report = CurationReport::default();
    for p in paths {
        if is_items_file(p)? {
            let (t, errors) = crate::export::read_items_with(p, ctx)?;
            report.lines_read += t.len() as u64 + errors.len() as u64;
            report.kept += t.len() as u64;
            report.malformed += errors.len() as u64;
            report.first_errors.extend(errors.iter().take(crate::curate::MAX_REPORTED_ERRORS).map(ToString::to_string));
            table.extend_from(&t);
        } else {
            raw.push(Source::from_path(p, None));
        }
    }
    if !raw.is_empty() {
        let curator = Curator::original()?;
        let (t, rep) = curator.curate_sources(&raw, ReadOptions::default(), ctx)?;
        if rep.cancelled {
            return Err(crate::Error::Cancelled.into());
        }
        report.absorb(rep);
        table.extend_from(&t);
    }
    if table.is_empty() {
        bail!("no items in {name}: {}", report.summary());
    }
    table.shrink_to_fit();
    ctx.report(&Progress { stage: "computing statistics".into(), ..Progress::default() });
    Ok(Dataset::build(name, false, table, report))
}

/// Generates and curates the built-in synthetic demo.
pub fn load_demo(n_lines: usize, seed: u64, ctx: &JobCtx) -> anyhow::Result<Dataset> {
    ctx.report(&Progress { stage: "generating synthetic demo".into(), ..Progress::default() });
    let bytes: Arc<[u8]> = crate::demo::demo_bytes(n_lines, seed).into();
    let source = Source::from_bytes("synthetic-demo.jsonl", bytes, None);
    let (table, report) = Curator::original()?.curate_sources(&[source], ReadOptions::default(), ctx)?;
    if report.cancelled {
        return Err(crate::Error::Cancelled.into());
    }
    Ok(Dataset::build(format!("synthetic demo ({n_lines} raw lines, seed {seed})"), true, table, report))
}
