//! A loaded dataset: an immutable snapshot (items, curation report, statistics, slot × category
//! counts, density grid) built off the UI thread, and the "open anything" loaders that make one
//! from files (raw metadata is curated, item files are read as they are) or from the built-in
//! demo. The app shows it; the CLI and the trainer read item files through the same reader.

use crate::curate::{CurationReport, Curator};
use crate::items::ItemTable;
use crate::items_io::{ItemsFile, is_items_file};
use crate::jobs::{JobCtx, Level, Progress};
use crate::load::{ReadOptions, Source};
use crate::sampling::SlotCategoryCounts;
use crate::stats::TableStats;
use crate::table::{SavedMappings, TableSpec};
use crate::view::{DensityGrid, density_grid};
use crate::{Error, Result};
use std::path::PathBuf;
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
    /// The files read, and the mapping of each user table among them (the Dataset tab offers to
    /// change it).
    pub tables: Vec<(PathBuf, TableSpec)>,
    /// Every file read.
    pub paths: Vec<PathBuf>,
}

impl Dataset {
    /// Derives statistics, counts and the density grid from a table.
    pub fn build(name: String, synthetic: bool, table: ItemTable, report: CurationReport) -> Self {
        let stats = TableStats::of(&table);
        let counts = SlotCategoryCounts::from_table(&table, 1.0);
        let density = density_grid(&table, DENSITY_SIZE.0, DENSITY_SIZE.1);
        Self { name, synthetic, table, report, stats, counts, density, tables: Vec::new(), paths: Vec::new() }
    }
}

/// Items read by [`open_paths`], before anything is derived from them.
pub struct Opened {
    /// The file names, joined.
    pub name: String,
    /// The items of all files, in order.
    pub table: ItemTable,
    /// How reading and curating went (item files count as kept and malformed rows).
    pub report: CurationReport,
    /// [`ItemsFile::malformed_report`] of each item file that had bad rows.
    pub malformed_reports: Vec<String>,
    /// How each user table was mapped (`shop.csv: columns mapped by guess: title=name, …`).
    pub mapping_notes: Vec<String>,
    /// The user tables and their mappings.
    pub tables: Vec<(PathBuf, TableSpec)>,
}

impl Opened {
    /// What to tell the user about the reading: each item file's malformed-row report (a
    /// warning); else, when curation dropped lines, its summary (a warning when some lines were
    /// malformed). The CLI prints these, the trainer logs them.
    pub fn notes(&self) -> Vec<(Level, String)> {
        let mut notes: Vec<(Level, String)> =
            self.malformed_reports.iter().map(|r| (Level::Warning, r.clone())).collect();
        let only_mappings = notes.is_empty();
        notes.extend(self.mapping_notes.iter().map(|n| (Level::Info, n.clone())));
        if only_mappings && self.report.lines_read > self.report.kept {
            let level = if self.report.malformed > 0 { Level::Warning } else { Level::Info };
            notes.push((level, format!("{}: {}", self.name, self.report.summary())));
        }
        notes
    }
}

/// Opens files of any supported kind: files of curated items are read as they are (through the
/// one reader, [`ItemsFile`]), raw metadata (JSON lines, gzip, Parquet, raw or Hugging Face row
/// form) is curated by the original rules. The app, the CLI and the trainer open their inputs
/// with it. A user's own table (CSV, Arrow, or Parquet / JSON lines not in Amazon's layout) is
/// read through its mapping: the one given in `mappings`, else the one saved for its columns,
/// else the guess from its column names (a note says which). Fails when no item comes out (line
/// problems are in the report).
pub fn open_paths(paths: &[PathBuf], ctx: &JobCtx) -> Result<Opened> {
    open_paths_mapped(paths, &[], None, ctx)
}

/// [`open_paths`] with mappings for some of the files and the saved ones for the rest.
pub fn open_paths_mapped(
    paths: &[PathBuf],
    mappings: &[(PathBuf, TableSpec)],
    saved: Option<&SavedMappings>,
    ctx: &JobCtx,
) -> Result<Opened> {
    if paths.is_empty() {
        return Err(Error::InvalidInput("no file given".into()));
    }
    for p in paths {
        if !p.exists() {
            return Err(Error::InvalidInput(format!("{}: no such file", p.display())));
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
    let mut malformed_reports = Vec::new();
    let mut mapping_notes = Vec::new();
    let mut tables = Vec::new();
    for p in paths {
        if let Some((_, spec)) = mappings.iter().find(|(q, _)| q == p) {
            mapping_notes.push(format!(
                "{}: columns mapped as {}",
                crate::table::file_name(p),
                spec.mapping.to_map_string()
            ));
            tables.push((p.clone(), spec.clone()));
            raw.push(spec.clone().source(p));
        } else if is_items_file(p)? {
            let file = ItemsFile::read(p, ctx)?;
            report.absorb_items_file(&file);
            malformed_reports.extend(file.malformed_report());
            table.extend_from(&file.table);
        } else if !crate::table::is_amazon_layout(p)? {
            let (spec, _, was_saved) = crate::table::spec_for(p, saved)?;
            let how = if was_saved { "with the mapping saved for its columns" } else { "by guess" };
            mapping_notes.push(format!(
                "{}: columns mapped {how}: {} (check with `pricer inspect`)",
                crate::table::file_name(p),
                spec.mapping.to_map_string()
            ));
            tables.push((p.clone(), spec.clone()));
            raw.push(spec.source(p));
        } else {
            raw.push(Source::from_path(p, None));
        }
    }
    if !raw.is_empty() {
        let curator = Curator::original()?;
        let (t, rep) = curator.curate_sources(&raw, ReadOptions::default(), ctx)?;
        if rep.cancelled {
            return Err(Error::Cancelled);
        }
        report.absorb(rep);
        table.extend_from(&t);
    }
    if table.is_empty() {
        return Err(Error::InvalidInput(format!("{name} holds no items: {}", report.summary())));
    }
    table.shrink_to_fit();
    Ok(Opened { name, table, report, malformed_reports, mapping_notes, tables })
}

/// Opens files ([`open_paths`]) and derives the snapshot the app shows.
pub fn load_paths(paths: &[PathBuf], ctx: &JobCtx) -> Result<Dataset> {
    load_paths_mapped(paths, &[], None, ctx)
}

/// [`open_paths_mapped`], then the snapshot the app shows; the mapping notes go to the job's log.
pub fn load_paths_mapped(
    paths: &[PathBuf],
    mappings: &[(PathBuf, TableSpec)],
    saved: Option<&SavedMappings>,
    ctx: &JobCtx,
) -> Result<Dataset> {
    let opened = open_paths_mapped(paths, mappings, saved, ctx)?;
    for note in &opened.mapping_notes {
        ctx.log(Level::Info, note);
    }
    ctx.report(&Progress { stage: "computing statistics".into(), ..Progress::default() });
    let mut data = Dataset::build(opened.name, false, opened.table, opened.report);
    data.tables = opened.tables;
    data.paths = paths.to_vec();
    Ok(data)
}

/// Generates and curates the built-in synthetic demo.
pub fn load_demo(n_lines: usize, seed: u64, ctx: &JobCtx) -> Result<Dataset> {
    ctx.report(&Progress { stage: "generating synthetic demo".into(), ..Progress::default() });
    let bytes: Arc<[u8]> = crate::demo::demo_bytes(n_lines, seed).into();
    let source = Source::from_bytes("synthetic-demo.jsonl", bytes, None);
    let (table, report) = Curator::original()?.curate_sources(&[source], ReadOptions::default(), ctx)?;
    if report.cancelled {
        return Err(Error::Cancelled);
    }
    Ok(Dataset::build(format!("synthetic demo ({n_lines} raw lines, seed {seed})"), true, table, report))
}

/// What opening files needs before it can run: every user table mapped.
pub enum Prepared {
    /// Each user table has its mapping (given, or saved for its columns): open with these.
    Ready(Vec<(PathBuf, TableSpec)>),
    /// This table needs a mapping confirmed by the user (the guess, or the saved one when
    /// `review` asked for it); the other tables' mappings so far are in `mapped`.
    NeedsMapping {
        /// The table.
        path: PathBuf,
        /// Its first rows and schema.
        head: Box<crate::table::TableHead>,
        /// The mapping to start from.
        mapping: crate::table::TableMapping,
        /// Mappings of the tables before it.
        mapped: Vec<(PathBuf, TableSpec)>,
    },
}

/// Finds the first user table among `paths` that has no mapping in `mapped` (nor in `saved`, unless
/// `review`): the app then shows the mapping dialog for it. Reads only the tables' first rows.
pub fn prepare_open(
    paths: &[PathBuf],
    mut mapped: Vec<(PathBuf, TableSpec)>,
    saved: &SavedMappings,
    review: bool,
    ctx: &JobCtx,
) -> Result<Prepared> {
    for p in paths {
        if mapped.iter().any(|(q, _)| q == p) || !p.exists() || is_items_file(p)? || crate::table::is_amazon_layout(p)?
        {
            continue;
        }
        let head = crate::table::inspect(p, None, crate::table::INSPECT_ROWS)?;
        let saved_spec = saved.get(&head.schema).filter(|s| s.mapping.validate(&head.schema).is_ok());
        match saved_spec {
            Some(spec) if !review => {
                ctx.log(
                    Level::Info,
                    &format!(
                        "{}: read with the mapping saved for its columns (Map columns… on the Dataset tab changes it)",
                        crate::table::file_name(p)
                    ),
                );
                mapped.push((p.clone(), spec.clone()));
            }
            _ => {
                let mapping = match saved_spec {
                    Some(spec) => spec.mapping.clone(),
                    None => crate::table::TableMapping::guess(&head.schema, &crate::table::default_category(p)),
                };
                return Ok(Prepared::NeedsMapping { path: p.clone(), head: Box::new(head), mapping, mapped });
            }
        }
    }
    Ok(Prepared::Ready(mapped))
}
