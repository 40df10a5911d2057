//! `pricer`: the headless command line over Pricer Studio's core. Progress goes to stderr, results
//! to stdout or files; a bad input exits non-zero with a clear message.

/// mimalloc keeps freed memory for reuse: training allocates and frees large tensors every step,
/// which with the system allocator costs a page fault per page each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use pricer::curate::{CurateOptions, Curator};
use pricer::export::{ExportFormat, TextForm};
use pricer::items::ItemTable;
use pricer::jobs::{JobCtx, Level, Progress};
use pricer::load::{ReadOptions, Source};
use pricer::sampling::{Recipe, Sample, SavedRecipe};
use pricer::stats::{Bins, TableStats, histogram};
use pricer::tokenizer::PriceTokenizer;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "pricer",
    version,
    about = "Pricer Studio on the command line: curate Amazon product metadata into prompt/price items, look at them, rebalance, export, score."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Curate the built-in synthetic demo dataset in memory and show what the tool does with it:
    /// the curation report, statistics, and the original recipe's balanced sample.
    Tour {
        /// Raw demo lines to generate.
        #[arg(long, default_value_t = pricer::demo::DEFAULT_LINES)]
        items: usize,
        /// Seed of the demo data and of the sample.
        #[arg(long, default_value_t = pricer::demo::DEFAULT_SEED)]
        seed: u64,
    },
    /// Write a synthetic raw metadata file (8 categories, raw form; every line says "synthetic": true).
    Demo {
        /// Number of raw product lines (about half have a price and most of those curate).
        #[arg(long, default_value_t = pricer::demo::DEFAULT_LINES)]
        items: usize,
        /// Seed: same seed and size, same bytes.
        #[arg(long, default_value_t = pricer::demo::DEFAULT_SEED)]
        seed: u64,
        /// Output file (`.jsonl`, or `.jsonl.gz` to compress).
        #[arg(long)]
        out: PathBuf,
    },
    /// Curate raw metadata (.jsonl, .jsonl.gz, Parquet; raw or Hugging Face row form) into items.
    ///
    /// The category of an item is --category if given, else `meta_<Category>` from the file name,
    /// else the record's main_category. The report (lines read, kept, dropped per rule, malformed
    /// lines with file:line) goes to stderr.
    Curate {
        /// Input files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Category for every item (overrides the file name and main_category).
        #[arg(long)]
        category: Option<String>,
        /// Output: items.jsonl or items.parquet (title, category, price, details, prompt, token_count).
        #[arg(long)]
        out: PathBuf,
        /// Another tokenizer.json instead of the built-in Llama 3.1.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Keep texts with more than this many tokens.
        #[arg(long, default_value_t = 150)]
        min_tokens: usize,
        /// Cut texts to this many tokens.
        #[arg(long, default_value_t = 160)]
        max_tokens: usize,
        /// Keep contents longer than this many characters.
        #[arg(long, default_value_t = 300)]
        min_chars: usize,
        /// Cut contents to this many characters.
        #[arg(long, default_value_t = 1120)]
        ceiling_chars: usize,
        /// Lowest price kept (inclusive).
        #[arg(long, default_value_t = 0.5)]
        min_price: f64,
        /// Highest price kept (inclusive).
        #[arg(long, default_value_t = 999.49)]
        max_price: f64,
        /// Cut at word boundaries instead of mid-word.
        #[arg(long)]
        word_boundary: bool,
        /// Write the report as JSON to this file too.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Read the inputs as your own tables (CSV, TSV, Parquet, JSON lines, Arrow) with this
        /// column mapping, over the guess from the column names:
        /// `title=COL,description=COL[+COL…],features=COL[+COL…],details=COL[+COL…],price=COL,category=COL|=NAME,decimal=comma`.
        /// `FIELD=` drops a guessed field. Tables not in Amazon's layout are mapped by guess
        /// without it (see `pricer inspect`).
        #[arg(long)]
        map: Option<String>,
        /// CSV field separator (`,` `;` `|` or `tab`; sniffed when not given).
        #[arg(long)]
        separator: Option<String>,
        /// The CSV's first row is data, not column names.
        #[arg(long)]
        no_header: bool,
    },
    /// Print a table's schema (columns, types, nulls, samples from its first rows) and the column
    /// mapping `pricer curate` would guess for it, as a `--map` value.
    Inspect {
        /// A CSV, TSV, Parquet, JSON-lines or Arrow file.
        table: PathBuf,
        /// Rows to inspect.
        #[arg(long, default_value_t = pricer::table::INSPECT_ROWS)]
        rows: usize,
        /// CSV field separator (`,` `;` `|` or `tab`; sniffed when not given).
        #[arg(long)]
        separator: Option<String>,
        /// The CSV's first row is data, not column names.
        #[arg(long)]
        no_header: bool,
        /// Print JSON (schema and mapping) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print statistics of an items file (counts, price/token/length summaries, categories, price histogram).
    Stats {
        /// items.jsonl or items.parquet (or raw metadata, curated first).
        items: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Width of the price histogram bins in dollars.
        #[arg(long, default_value_t = 100.0)]
        bin_width: f64,
    },
    /// Balance, shuffle and split items by a recipe, and export train and test files.
    Sample {
        /// items.jsonl or items.parquet (or raw metadata, curated first).
        items: PathBuf,
        /// original (slots of $1, cap 1200 below $240, Automotive 1 / others 5) or lite (Appliances only).
        #[arg(long, default_value = "original")]
        preset: String,
        /// A saved recipe.json instead of a preset.
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Seed of both the draw and the split.
        #[arg(long)]
        seed: Option<u64>,
        /// Train items.
        #[arg(long)]
        train: Option<usize>,
        /// Test items.
        #[arg(long)]
        test: Option<usize>,
        /// Output directory: train.<ext>, test.<ext>, recipe.json.
        #[arg(long)]
        out_dir: PathBuf,
        /// parquet | jsonl | openai | csv.
        #[arg(long, default_value = "parquet")]
        format: String,
    },
    /// Export all items of a file in a training format.
    Export {
        /// items.jsonl or items.parquet (or raw metadata, curated first).
        items: PathBuf,
        /// parquet | jsonl | openai | csv.
        #[arg(long)]
        format: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Use test prompts (cut after `Price is $`) instead of full prompts.
        #[arg(long)]
        test_prompts: bool,
    },
    /// Score predictions: a CSV with `truth,guess` columns → the Tester's report line and a per-item CSV.
    Score {
        /// CSV with a header row holding `truth` and `guess`.
        predictions: PathBuf,
        /// Title of the report line.
        #[arg(long, default_value = "Predictions")]
        title: String,
        /// Number of items scored (the first N).
        #[arg(long, default_value_t = 250)]
        size: usize,
        /// Per-item CSV (default: <predictions>.scored.csv).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fine-tune a causal LM with LoRA on curated items (headless; the app launches this command).
    ///
    /// Makes a run folder (config.toml, metrics.jsonl, train.log, status.json, checkpoints/).
    /// Create a file named STOP in the run folder to stop after the current step with a checkpoint;
    /// `--resume RUN_DIR` continues from the last complete checkpoint on the same curve.
    Train {
        /// Run configuration (TOML; `pricer train --print-config` shows every key with its default).
        #[arg(long, required_unless_present_any = ["resume", "print_config"])]
        config: Option<PathBuf>,
        /// Continue this run folder from its last checkpoint.
        #[arg(long, conflicts_with = "config")]
        resume: Option<PathBuf>,
        /// Change the number of optimizer steps (e.g. to extend a finished run on resume).
        #[arg(long)]
        max_steps: Option<usize>,
        /// Print the default configuration and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Price prompts with a model and (optionally) a trained adapter checkpoint.
    Predict {
        /// Model: .gguf file, Hugging Face folder or Hub id (default: the fetched SmolLM2-135M-Instruct).
        #[arg(long)]
        model: Option<String>,
        /// A checkpoint folder (adapter_model.safetensors, optional price_head.safetensors).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// A prompt to price (a test prompt ending `Price is $`, or a full item prompt).
        #[arg(long, conflicts_with = "items")]
        prompt: Option<String>,
        /// Items to price (prints title, truth and guess for the first --size).
        #[arg(long)]
        items: Option<PathBuf>,
        /// Items priced from --items.
        #[arg(long, default_value_t = 10)]
        size: usize,
        /// Longest prompt in tokens (the description is shortened, never the price part).
        #[arg(long, default_value_t = 512)]
        max_seq_len: usize,
        /// Price decode: top3 (number tokens), greedy, digit-top3, tree, tree-median, regression (default: by tokenizer / head).
        #[arg(long, value_parser = parse_decode)]
        decode: Option<pricer::finetune::Decode>,
    },
    /// Hand a run to axolotl (multi-GPU/multi-node LoRA and QLoRA): writes DIR/axolotl.yaml, the
    /// items as input_output JSON lines (loss only on the price), sky.yaml and train.sbatch.
    ExportRun {
        /// Run configuration (TOML, as for `pricer train`).
        config: PathBuf,
        /// Target trainer (axolotl).
        #[arg(long, default_value = "axolotl")]
        to: String,
        /// Output folder.
        dir: PathBuf,
        /// The base model as axolotl loads it (Hub id or folder); default: from the run's model.
        #[arg(long)]
        base_model: Option<String>,
        /// Load the base in 4 bits (QLoRA).
        #[arg(long)]
        qlora: bool,
        /// GPUs for the launch files (SkyPilot's form: A100:1, H100:8).
        #[arg(long, default_value = "A100:1")]
        gpus: String,
        /// tokenizer.json to cut descriptions with, when the run's model does not give one.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
    },
    /// Import a Hugging Face Trainer / axolotl output folder (trainer_state.json, PEFT
    /// checkpoints) as a run folder: its curves in the Fine-tune tab, its adapters evaluated
    /// with `pricer eval`.
    ImportRun {
        /// The trainer's output folder.
        dir: PathBuf,
        /// Folder of run folders.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// Run folder name (default imported-<folder name>).
        #[arg(long)]
        name: Option<String>,
        /// The base model (a .gguf, a model folder or a Hub id) when the adapter's
        /// base_model_name_or_path is not loadable here.
        #[arg(long)]
        model: Option<String>,
    },
    /// Train on another machine over SSH (OpenSSH, with your keys and ~/.ssh/config; never a
    /// password): launch there, follow, stop, resume, pull checkpoints.
    Remote {
        #[command(subcommand)]
        cmd: RemoteCmd,
    },
    /// Evaluate a run's checkpoint on test items with the Tester: report line, per-item CSV.
    Eval {
        /// The run folder.
        #[arg(long)]
        run: PathBuf,
        /// Test items (Parquet or JSONL of curated items).
        #[arg(long)]
        test: PathBuf,
        /// A checkpoint: a folder, `checkpoint-<step>`, `best` (lowest validation Error) or
        /// `best:<error|rmsle|hits|loss>` (default: the run's latest).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Items scored (the first N).
        #[arg(long, default_value_t = 250)]
        size: usize,
        /// Price decode: top3 (number tokens), greedy, digit-top3, tree, tree-median, regression (default: by tokenizer / head).
        #[arg(long, value_parser = parse_decode)]
        decode: Option<pricer::finetune::Decode>,
    },
    /// Fit a pricer on training items, price test items, score them with the Tester and save the
    /// evaluation (JSON: the pricer's full spec, file digests, every item, every metric).
    ///
    /// PRICER is one of: random, constant, features-lr, bow-lr, word2vec-lr, word2vec-svr,
    /// word2vec-rf, embed-knn, embed-rf, chat:MODEL@BASE_URL, run:RUN_DIR[:CHECKPOINT],
    /// import:FILE, human:FILE, ensemble:EVAL,EVAL,... An interrupted evaluation continues where
    /// it stopped when run again with the same --out.
    Price {
        /// The pricer (see above).
        #[arg(long)]
        pricer: String,
        /// Training items (curated items file), for pricers that fit.
        #[arg(long)]
        train: Option<PathBuf>,
        /// Test items (curated items file).
        #[arg(long)]
        test: PathBuf,
        /// Items priced.
        #[arg(long, default_value_t = 250)]
        size: usize,
        /// First test item priced (the ensemble's members are evaluated on its fitting items too).
        #[arg(long, default_value_t = 0)]
        start: usize,
        /// Evaluation file written.
        #[arg(long)]
        out: PathBuf,
        /// Per-item CSV written.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Report title (default: from the pricer).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        opts: Box<PricerOpts>,
    },
    /// Compare evaluations: one row per pricer sorted by error, on the items they share.
    Compare {
        /// Evaluation files (from `pricer price`, `pricer eval`, or a run folder's eval-*.json).
        #[arg(required = true)]
        evals: Vec<PathBuf>,
        /// Add a breakdown by `category` or `price-band`.
        #[arg(long)]
        by: Option<String>,
        /// Write one row per item with every pricer's guess and error.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Print 95% bootstrap intervals of Error and Hits, and the paired bootstrap of the best
        /// pricer against each other one.
        #[arg(long)]
        intervals: bool,
        /// Save the evaluations as a pricer set (open it with `pricer-studio --pricer-set FILE`).
        #[arg(long)]
        save_set: Option<PathBuf>,
    },
    /// Embed items' descriptions with the sentence embedder (fills its cache; prints texts/s).
    Embed {
        /// Items file.
        #[arg(long)]
        items: PathBuf,
        /// Items embedded (the first N).
        #[arg(long, default_value_t = 2000)]
        size: usize,
        /// Embedder folder (default: the fetched all-MiniLM-L6-v2).
        #[arg(long)]
        embedder: Option<String>,
        /// Compute every vector (no cache read or written), e.g. to measure throughput.
        #[arg(long)]
        no_cache: bool,
    },
    /// Write test prompts to a CSV for a person to price (fill in `guess`, then
    /// `pricer price --pricer human:FILE`).
    HumanCsv {
        /// Test items.
        #[arg(long)]
        test: PathBuf,
        /// Items written.
        #[arg(long, default_value_t = 250)]
        size: usize,
        /// First item written.
        #[arg(long, default_value_t = 0)]
        start: usize,
        /// The CSV.
        #[arg(long)]
        out: PathBuf,
    },
    /// Download raw category files of McAuley-Lab/Amazon-Reviews-2023 from the Hugging Face Hub.
    ///
    /// Uses the standard cache (HF_HOME), HF_ENDPOINT and HF_TOKEN; a partial download resumes.
    Download {
        /// Categories, e.g. Appliances Tools_and_Home_Improvement (`all8` for the original eight).
        #[arg(required = true)]
        categories: Vec<String>,
        /// Copy the files into this directory as meta_<Category>.jsonl (default: leave them in the cache).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Hub endpoint (default HF_ENDPOINT or https://huggingface.co).
        #[arg(long)]
        endpoint: Option<String>,
        /// Cache directory (default HF_HOME/hub).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RemoteCmd {
    /// Copy the run's data and model there (only files it lacks, by SHA-256), start `pricer
    /// train` there detached, and make the local mirror folder RUNS_DIR/NAME (prints it).
    Launch {
        /// The run's config (as for `pricer train --config`).
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        host: HostArgs,
        /// Then follow it (as `pricer remote pull --follow`).
        #[arg(long)]
        follow: bool,
    },
    /// Bring a remote run's metrics, log and status into its mirror folder (appended bytes only).
    Pull {
        /// The local mirror folder.
        run: PathBuf,
        /// Keep pulling every --every seconds until the run stops, finishes or fails; an
        /// unreachable host is retried.
        #[arg(long)]
        follow: bool,
        #[arg(long, default_value_t = 5.0)]
        every: f64,
        /// Also copy the checkpoints the mirror lacks.
        #[arg(long)]
        checkpoints: bool,
    },
    /// Ask the remote trainer to stop at its next step (it saves a checkpoint).
    Stop {
        /// The local mirror folder.
        run: PathBuf,
    },
    /// Resume the remote run there from its last checkpoint.
    Resume {
        /// The local mirror folder.
        run: PathBuf,
        /// Change the number of optimizer steps.
        #[arg(long)]
        max_steps: Option<usize>,
    },
}

#[derive(clap::Args)]
struct HostArgs {
    /// `user@host`, `host` or an ~/.ssh/config alias.
    #[arg(long)]
    host: String,
    #[arg(long)]
    port: Option<u16>,
    /// A private key file (else ssh's own choice: agent, config).
    #[arg(long)]
    identity: Option<PathBuf>,
    /// Extra `-o NAME=VALUE` for ssh (repeatable).
    #[arg(long = "ssh-option")]
    ssh_options: Vec<String>,
    /// The work folder there.
    #[arg(long, default_value = "pricer-work")]
    work_dir: String,
    /// The pricer binary there (e.g. one built with --features cuda).
    #[arg(long, default_value = "pricer")]
    remote_pricer: String,
}

/// Pulls a remote run until it ends; unreachable spells are reported once and retried.
fn follow_remote(run: &std::path::Path, every: f64) -> Result<()> {
    use pricer::finetune::run::{RunState, read_status};
    let mut unreachable_since: Option<Instant> = None;
    loop {
        match pricer::remote::pull_run(run) {
            Ok(_) => {
                if let Some(t) = unreachable_since.take() {
                    eprintln!("reachable again after {:.0}s", t.elapsed().as_secs_f64());
                }
                if let Some(s) = read_status(run) {
                    eprintln!("{:?} step {}/{} {}", s.state, s.step, s.total_steps, s.message);
                    if matches!(s.state, RunState::Stopped | RunState::Finished | RunState::Failed) {
                        return Ok(());
                    }
                }
            }
            Err(e) if pricer::remote::is_unreachable(&e) => {
                if unreachable_since.is_none() {
                    eprintln!("unreachable: {e} (retrying)");
                    unreachable_since = Some(Instant::now());
                }
            }
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(std::time::Duration::from_secs_f64(every.max(0.2)));
    }
}

fn main() {
    let heavy = std::env::args().nth(1).is_some_and(|a| matches!(a.as_str(), "train" | "eval" | "predict"));
    if heavy && let Err(e) = pricer::finetune::reexec_with_allocator_settings() {
        eprintln!("note: running without allocator settings ({e})");
    }
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Prints throttled progress and every log line to stderr.
/// The options of `pricer price` beside the pricer's name (see `pricers::spec::SpecOptions`).
#[derive(clap::Args)]
struct PricerOpts {
    /// Seed (random, word2vec, SVR, forests).
    #[arg(long)]
    seed: Option<u64>,
    /// Neighbours of embed-knn.
    #[arg(long)]
    k: Option<usize>,
    /// embed-knn weights neighbours by 1/distance.
    #[arg(long)]
    distance_weighted: bool,
    /// Trees of the random forests.
    #[arg(long)]
    trees: Option<usize>,
    /// Sentence-embedder folder (default: the fetched all-MiniLM-L6-v2).
    #[arg(long)]
    embedder: Option<String>,
    /// Chat: environment variable holding the API key (the key is never written anywhere).
    #[arg(long)]
    api_key_env: Option<String>,
    /// Chat: retrieve K similar training items as context (the original RAG: 5).
    #[arg(long)]
    rag: Option<usize>,
    /// Chat: calls in flight.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Chat: name of the reply-length field (max_tokens, or max_completion_tokens).
    #[arg(long)]
    max_tokens_field: Option<String>,
    /// Imported guesses: the guess column.
    #[arg(long)]
    guess_column: Option<String>,
    /// Imported guesses: the index column (join by index).
    #[arg(long)]
    index_column: Option<String>,
    /// Imported guesses: the title column (join by title, or checked).
    #[arg(long)]
    title_column: Option<String>,
    /// Imported guesses: the truth column (checked).
    #[arg(long)]
    truth_column: Option<String>,
    /// Ensemble: test items it is fitted on, A..B (default 1000..1250).
    #[arg(long)]
    fit_items: Option<String>,
}

impl PricerOpts {
    fn into_options(self) -> Result<pricer::pricers::spec::SpecOptions> {
        Ok(pricer::pricers::spec::SpecOptions {
            seed: self.seed,
            k: self.k,
            distance_weighted: self.distance_weighted,
            trees: self.trees,
            embedder: self.embedder,
            api_key_env: self.api_key_env,
            rag: self.rag,
            concurrency: self.concurrency,
            max_tokens_field: self.max_tokens_field,
            guess_column: self.guess_column,
            index_column: self.index_column,
            title_column: self.title_column,
            truth_column: self.truth_column,
            fit_items: self.fit_items.as_deref().map(pricer::pricers::spec::parse_range).transpose()?,
        })
    }
}

fn stderr_progress() -> JobCtx {
    let last = Arc::new(Mutex::new(Instant::now()));
    JobCtx::with_progress(move |p: &Progress| {
        let Ok(mut last) = last.lock() else { return };
        if last.elapsed().as_millis() < 500 && p.fraction() != Some(1.0) {
            return;
        }
        *last = Instant::now();
        let items = if p.n_items > 0 { format!(" ({} items)", p.n_items) } else { String::new() };
        match p.fraction() {
            Some(f) => eprintln!("{}: {:5.1}%{items}", p.stage, f * 100.0),
            None => eprintln!("{}: {}{items}", p.stage, p.done),
        }
    })
    .with_log(|level, text| match level {
        Level::Info => eprintln!("{text}"),
        Level::Warning => eprintln!("warning: {text}"),
        Level::Error => eprintln!("error: {text}"),
    })
}

/// Opens an items file (or raw metadata, curated) through the loader the app and the trainer
/// use; malformed lines are reported as warnings.
/// The CSV dialect from the command line: sniffed, then overridden (`None` for other kinds).
fn csv_dialect(path: &Path, separator: Option<&str>, no_header: bool) -> Result<Option<pricer::table::CsvDialect>> {
    if pricer::table::TableKind::of(path) != Some(pricer::table::TableKind::Csv) {
        return Ok(None);
    }
    if separator.is_none() && !no_header {
        return Ok(None);
    }
    let head = pricer::table::inspect(path, None, 1)?;
    let mut d = head.schema.dialect.unwrap_or_default();
    if let Some(sep) = separator {
        d.separator = match sep {
            "tab" | "\\t" | "\t" => b'\t',
            s if s.len() == 1 => s.as_bytes()[0],
            s => bail!("--separator {s}: give one character or `tab`"),
        };
    }
    if no_header {
        d.has_header = false;
    }
    Ok(Some(d))
}

/// How `curate` reads a table: dialect, the guess from the column names, then `--map`.
fn table_spec(
    path: &Path,
    map: Option<&str>,
    separator: Option<&str>,
    no_header: bool,
) -> Result<pricer::table::TableSpec> {
    let dialect = csv_dialect(path, separator, no_header)?;
    let head = pricer::table::inspect(path, dialect, pricer::table::INSPECT_ROWS)?;
    let mut mapping = pricer::table::TableMapping::guess(&head.schema, &pricer::table::default_category(path));
    if let Some(m) = map {
        mapping.apply_map(m, &head.schema)?;
    }
    mapping.validate(&head.schema)?;
    Ok(pricer::table::TableSpec { kind: head.schema.kind, dialect: head.schema.dialect, mapping })
}

fn load_items(path: &Path) -> Result<ItemTable> {
    let ctx = stderr_progress();
    let opened =
        pricer::dataset::open_paths(&[path.to_owned()], &ctx).with_context(|| format!("reading {}", path.display()))?;
    for (level, note) in opened.notes() {
        ctx.log(level, &note);
    }
    Ok(opened.table)
}

fn parse_decode(s: &str) -> std::result::Result<pricer::finetune::Decode, String> {
    pricer::finetune::Decode::parse(s)
        .ok_or_else(|| format!("unknown decode `{s}`: use top3, greedy, digit-top3, tree, tree-median or regression"))
}

fn parse_format(s: &str) -> Result<ExportFormat> {
    ExportFormat::parse(s).with_context(|| format!("unknown format `{s}`: use parquet, jsonl, openai or csv"))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Tour { items, seed } => {
            let t = Instant::now();
            let bytes: Arc<[u8]> = pricer::demo::demo_bytes(items, seed).into();
            let source = Source::from_bytes("synthetic-demo.jsonl", bytes, None);
            let curator = Curator::original()?;
            let (table, rep) = curator.curate_sources(&[source], ReadOptions::default(), &stderr_progress())?;
            print_out(&format!("SYNTHETIC DEMO DATA ({items} generated raw lines, seed {seed}) — not real products"));
            print_out(&rep.summary());
            print_out(&format!("curated in {:.1?}\n", t.elapsed()));
            let hist = histogram(table.prices(), Bins::Width { start: 0.0, width: 100.0, end: 1000.0 });
            print_stats(&TableStats::of(&table), &hist);
            let recipe = Recipe::preset("original").context("original preset")?;
            let sample = Sample::draw(&table, &recipe);
            print_out(&format!(
                "\noriginal recipe (cap 1200 per $1 slot below $240, Automotive 1 / others 5): {} of {} items, avg ${:.2}",
                sample.len(),
                table.len(),
                sample.mean_price_usd
            ));
            print_out("next: pricer demo --out raw.jsonl; pricer curate raw.jsonl --out items.parquet; pricer --help");
        }
        Command::Demo { items, seed, out } => {
            let t = Instant::now();
            pricer::demo::write_demo(&out, items, seed, &stderr_progress())?;
            eprintln!("wrote {items} synthetic demo lines (seed {seed}) to {} in {:.1?}", out.display(), t.elapsed());
        }
        Command::Curate {
            inputs,
            category,
            out,
            tokenizer,
            min_tokens,
            max_tokens,
            min_chars,
            ceiling_chars,
            min_price,
            max_price,
            word_boundary,
            report,
            map,
            separator,
            no_header,
        } => {
            for p in &inputs {
                if !p.exists() {
                    bail!("{}: no such file", p.display());
                }
            }
            let tok = match tokenizer {
                Some(p) => Arc::new(PriceTokenizer::from_file(&p)?),
                None => PriceTokenizer::llama31()?,
            };
            let opts = CurateOptions {
                min_tokens,
                max_tokens,
                min_chars,
                ceiling_chars,
                min_price_usd: min_price,
                max_price_usd: max_price,
                word_boundary,
            };
            if opts.max_tokens == 0 {
                bail!("--max-tokens must be positive");
            }
            let curator = Curator::new(tok, opts)?;
            let mut sources: Vec<Source> = Vec::new();
            for p in &inputs {
                let forced = map.is_some() || separator.is_some() || no_header;
                if forced || !pricer::table::is_amazon_layout(p)? {
                    let spec = table_spec(p, map.as_deref(), separator.as_deref(), no_header)?;
                    eprintln!("{}: --map {}", p.display(), spec.mapping.to_map_string());
                    let mut src = spec.source(p);
                    if category.is_some() {
                        src.category = category.clone();
                    }
                    sources.push(src);
                } else {
                    sources.push(Source::from_path(p, category.clone()));
                }
            }
            let t = Instant::now();
            let (table, rep) = curator.curate_sources(&sources, ReadOptions::default(), &stderr_progress())?;
            eprintln!("{}", rep.summary());
            eprintln!("curated in {:.1?} with {}", t.elapsed(), curator.tokenizer().name());
            if let Some(r) = report {
                pricer::atomic::write_atomic_json(&r, &rep)?;
            }
            if table.is_empty() && rep.lines_read > 0 && rep.malformed == rep.lines_read {
                bail!("no line of the input could be parsed");
            }
            pricer::items_io::write_items(&table, &out)?;
            eprintln!("wrote {} items to {}", table.len(), out.display());
        }
        Command::Inspect { table, rows, separator, no_header, json } => {
            let dialect = csv_dialect(&table, separator.as_deref(), no_header)?;
            let head = pricer::table::inspect(&table, dialect, rows)?;
            let mapping = pricer::table::TableMapping::guess(&head.schema, &pricer::table::default_category(&table));
            let problem = mapping.validate(&head.schema).err();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "schema": head.schema,
                        "mapping": mapping,
                        "map": mapping.to_map_string(),
                        "problem": problem.as_ref().map(ToString::to_string),
                    }))?
                );
            } else {
                print!("{}", head.schema.describe());
                println!("\nguessed mapping:\n  --map {}", mapping.to_map_string());
                if let Some(p) = problem {
                    println!("not enough to curate: {p}");
                }
            }
        }
        Command::Stats { items, json, bin_width } => {
            if bin_width <= 0.0 {
                bail!("--bin-width must be positive");
            }
            let table = load_items(&items)?;
            let stats = TableStats::of(&table);
            let hist = histogram(table.prices(), Bins::Width { start: 0.0, width: bin_width, end: 1000.0 });
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"stats": stats, "price_histogram": hist}))?
                );
            } else {
                print_stats(&stats, &hist);
            }
        }
        Command::Sample { items, preset, recipe, seed, train, test, out_dir, format } => {
            let format = parse_format(&format)?;
            let mut recipe = match recipe {
                Some(p) => SavedRecipe::load(&p)?.recipe,
                None => Recipe::preset(&preset)
                    .with_context(|| format!("unknown preset `{preset}`: use original or lite"))?,
            };
            if let Some(s) = seed {
                recipe.balance.seed = s;
                recipe.split.seed = s;
            }
            if let Some(n) = train {
                recipe.split.n_train = n;
            }
            if let Some(n) = test {
                recipe.split.n_test = n;
            }
            let table = load_items(&items)?;
            let t = Instant::now();
            let out = Sample::draw(&table, &recipe).export(&table, &out_dir, format, &items)?;
            eprintln!(
                "sampled {} of {} items (avg ${:.2}) in {:.1?}; train {}, test {} → {}",
                out.n_sampled,
                table.len(),
                out.mean_price_usd,
                t.elapsed(),
                out.n_train,
                out.n_test,
                out_dir.display()
            );
            for (c, n) in &out.category_counts {
                eprintln!("  {c:<30} {n:>9}");
            }
        }
        Command::Export { items, format, out, test_prompts } => {
            let format = parse_format(&format)?;
            let table = load_items(&items)?;
            let all: Vec<usize> = (0..table.len()).collect();
            let form = if test_prompts { TextForm::Test } else { TextForm::Train };
            pricer::export::export(&table, &all, form, format, &out)?;
            eprintln!("wrote {} items to {}", table.len(), out.display());
        }
        Command::Score { predictions, title, size, out } => {
            let (pairs, extra) = pricer::tester::read_predictions(&predictions)?;
            let report = pricer::tester::TestReport::new(&title, &pairs, size)?;
            print_out(&report.line());
            eprintln!(
                "n={} RMSE=${:.2} median error=${:.2} R²={:.3}",
                report.items.len(),
                report.rmse,
                report.median_error,
                report.r2
            );
            let out = out.unwrap_or_else(|| predictions.with_extension("scored.csv"));
            report.write_csv(&out, &extra)?;
            eprintln!("per-item scores written to {}", out.display());
        }
        Command::Train { config, resume, max_steps, print_config } => {
            if print_config {
                print_out(&pricer::finetune::TrainConfig::default().to_toml());
                return Ok(());
            }
            let on_start = |dir: &Path| print_out(&format!("run folder: {}", dir.display()));
            let (_, outcome, step) = pricer::finetune::train::run_command(
                config.as_deref(),
                resume.as_deref(),
                max_steps,
                &stderr_progress(),
                &on_start,
            )?;
            print_out(&format!("{outcome:?} at step {step}"));
        }
        Command::Remote { cmd } => match cmd {
            RemoteCmd::Launch { config, host, follow } => {
                let cfg = pricer::finetune::TrainConfig::load(&config)?;
                let host = pricer::remote::Host {
                    name: host.host.clone(),
                    destination: host.host,
                    port: host.port,
                    identity: host.identity,
                    options: host.ssh_options,
                    work_dir: host.work_dir,
                    pricer: host.remote_pricer,
                };
                match host.pricer_version()? {
                    Some(v) if v == env!("CARGO_PKG_VERSION") => {}
                    Some(v) => eprintln!("note: pricer {v} there, {} here", env!("CARGO_PKG_VERSION")),
                    None => bail!(
                        "{}: no `{}` there: install it (same OS/arch: copy this binary) or give --remote-pricer PATH",
                        host.name,
                        host.pricer
                    ),
                }
                let l = pricer::remote::launch(&host, &cfg)?;
                eprintln!("{}", l.summary());
                print_out(&l.local.display().to_string());
                if follow {
                    follow_remote(&l.local, 5.0)?;
                }
            }
            RemoteCmd::Pull { run, follow, every, checkpoints } => {
                if follow {
                    follow_remote(&run, every)?;
                } else {
                    let p = pricer::remote::pull_run(&run)?;
                    eprintln!("{} metrics bytes, {} log bytes", p.appended[0], p.appended[1]);
                }
                if checkpoints {
                    for c in pricer::remote::pull_checkpoints(&run)? {
                        print_out(&c);
                    }
                }
            }
            RemoteCmd::Stop { run } => pricer::remote::stop(&run)?,
            RemoteCmd::Resume { run, max_steps } => {
                let pid = pricer::remote::resume(&run, max_steps)?;
                eprintln!("resumed there (pid {pid})");
            }
        },
        Command::ImportRun { dir, runs, name, model } => {
            let opts = pricer::finetune::import::ImportOptions { runs_dir: runs, name, model };
            let r = pricer::finetune::import::import_run(&dir, &opts)?;
            print_out(&r.dir.display().to_string());
            eprintln!(
                "{} train and {} validation rows, checkpoints {:?}, base model {}; evaluate with: pricer eval --run {} --test ITEMS",
                r.train_rows,
                r.val_rows,
                r.checkpoints,
                r.model,
                r.dir.display()
            );
        }
        Command::ExportRun { config, to, dir, base_model, qlora, gpus, tokenizer } => {
            if to != "axolotl" {
                bail!("--to {to}: only axolotl is supported");
            }
            let cfg = pricer::finetune::TrainConfig::load(&config)?;
            let opts = pricer::finetune::axolotl::ExportOptions { base_model, qlora, gpus, tokenizer };
            let r = pricer::finetune::axolotl::export(&cfg, &dir, &opts, &stderr_progress())?;
            for f in &r.files {
                print_out(&f.display().to_string());
            }
            eprintln!(
                "{} training and {} validation items for {} (sequence_len {}, {} descriptions shortened); run: cd {} && axolotl train axolotl.yaml",
                r.train,
                r.val,
                r.base_model,
                r.sequence_len,
                r.shortened,
                dir.display()
            );
        }
        Command::Predict { model, checkpoint, prompt, items, size, max_seq_len, decode } => {
            use pricer::finetune::{Model, ModelSource, Predictor};
            let model_s = model.unwrap_or_else(|| pricer::finetune::model::default_model_path().display().to_string());
            let source = ModelSource::parse(&model_s)?;
            let m = Model::load(&source, &candle_core::Device::Cpu, &Default::default())?;
            let mut p = Predictor::from_checkpoint(m, checkpoint.as_deref(), max_seq_len)?;
            if let Some(d) = decode {
                p.decode = d;
            }
            eprintln!("decode: {}", p.decode.name());
            match (prompt, items) {
                (Some(prompt), _) => print_out(&format!("{:.2}", p.predict(&prompt)?)),
                (None, Some(path)) => {
                    let table = load_items(&path)?;
                    print_out("truth\tguess\ttitle");
                    let n = size.min(table.len());
                    for start in (0..n).step_by(16) {
                        let items: Vec<_> = (start..(start + 16).min(n)).map(|i| table.get(i)).collect();
                        let prompts: Vec<&str> = items.iter().map(|it| it.prompt).collect();
                        for (item, guess) in items.iter().zip(p.predict_batch(&prompts)?) {
                            print_out(&format!("{:.2}\t{:.2}\t{}", item.price, guess, item.title));
                        }
                    }
                }
                (None, None) => bail!("give --prompt TEXT or --items FILE"),
            }
        }
        Command::Eval { run, test, checkpoint, size, decode } => {
            let e = pricer::pricers::run::evaluate_run(
                &run,
                checkpoint.as_deref(),
                &test,
                size,
                decode,
                &stderr_progress(),
            )?;
            print_out(&e.line);
            eprintln!(
                "{} items, {:.1} s ({:.2} s per item); evaluation and per-item CSV in {}",
                e.metrics.n,
                e.predict_seconds,
                e.predict_seconds / e.metrics.n.max(1) as f64,
                run.display()
            );
        }
        Command::Price { pricer: name, train, test, size, start, out, csv, name: title, opts } => {
            let spec = pricer::pricers::spec::parse(&name, &opts.into_options()?)?;
            if spec.needs_train() && train.is_none() {
                bail!("the {} pricer fits on training items: give --train FILE", spec.kind());
            }
            let req = pricer::pricers::engine::Request {
                spec,
                name: title,
                train,
                test,
                start,
                size,
                out: Some(out.clone()),
                cache: None,
            };
            let e = pricer::pricers::engine::evaluate(&req, &stderr_progress())?;
            print_out(&e.line);
            let m = &e.metrics;
            eprintln!(
                "n={} RMSE=${:.2} median error=${:.2} R²={:.3} MAPE={:.1}% bias=${:+.2} unparsable={} · fit {:.2}s, predict {:.2}s",
                m.n, m.rmse, m.median_error, m.r2, m.mape, m.bias, m.unparsable, e.fit_seconds, e.predict_seconds
            );
            let fitted = e.fitted.to_string();
            if !e.fitted.is_null() && fitted.len() <= 800 {
                eprintln!("fitted: {fitted}");
            }
            if let Some(u) = &e.usage {
                eprintln!(
                    "chat: {} calls, {} cached, {} retries, {} prompt + {} completion tokens",
                    u.calls, u.cached, u.retries, u.prompt_tokens, u.completion_tokens
                );
            }
            if let Some(csv) = csv {
                e.write_csv(&csv)?;
                eprintln!("per-item CSV: {}", csv.display());
            }
            eprintln!("evaluation: {}", out.display());
        }
        Command::Compare { evals, by, csv, intervals, save_set } => {
            use pricer::pricers::compare;
            let loaded: Vec<pricer::evaluation::Evaluation> =
                evals.iter().map(|p| pricer::evaluation::Evaluation::load(p)).collect::<pricer::Result<_>>()?;
            let c = compare::align(loaded)?;
            for n in &c.notes {
                eprintln!("note: {n}");
            }
            print_out(&compare_table(&c));
            if intervals {
                print_out(&intervals_table(&c)?);
            }
            if let Some(path) = save_set {
                let set = compare::PricerSet {
                    format: compare::SET_FORMAT,
                    pricers: evals.iter().map(|p| compare::SetEntry { path: absolute(p), name: None }).collect(),
                };
                set.save(&path)?;
                eprintln!("pricer set: {}", path.display());
            }
            if let Some(by) = by {
                let by = match by.as_str() {
                    "category" => compare::By::Category,
                    "price-band" | "band" => compare::By::PriceBand,
                    other => bail!("unknown breakdown `{other}`: use category or price-band"),
                };
                let rows = compare::breakdown(&c, by)?;
                let mut text = format!(
                    "\n{:<32} {:<28} {:>5} {:>10} {:>7} {:>7}",
                    "pricer", "group", "n", "error", "rmsle", "hits"
                );
                for r in rows {
                    text.push_str(&format!(
                        "\n{:<32} {:<28} {:>5} {:>10.2} {:>7.2} {:>6.1}%",
                        truncate(&r.pricer, 32),
                        truncate(&r.group, 28),
                        r.n,
                        r.error,
                        r.rmsle,
                        r.hits_percent
                    ));
                }
                print_out(&text);
            }
            if let Some(csv) = csv {
                compare::write_items_csv(&c, &csv)?;
                eprintln!("per-item CSV: {}", csv.display());
            }
        }
        Command::Embed { items, size, embedder, no_cache } => {
            use pricer::pricers::embed::{Embedder, resolve};
            let table = load_items(&items)?;
            let n = size.min(table.len());
            let dir = resolve(embedder.as_deref().unwrap_or(""));
            let e = if no_cache {
                Embedder::load_uncached(&dir)?
            } else {
                Embedder::load(&dir, &pricer::pricers::cache_dir())?
            };
            let texts: Vec<String> = (0..n).map(|i| pricer::pricers::description(table.get(i).prompt)).collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let t0 = Instant::now();
            let v = e.embed(&refs, &stderr_progress())?;
            let secs = t0.elapsed().as_secs_f64();
            print_out(&format!(
                "{} texts in {secs:.2} s: {:.1} texts/s ({}-d, {})",
                v.len(),
                v.len() as f64 / secs,
                e.dim,
                e.name
            ));
        }
        Command::HumanCsv { test, size, start, out } => {
            let table = load_items(&test)?;
            let n = pricer::pricers::import::write_human_csv(&table, start..start + size, &out)?;
            print_out(&format!("{n} test prompts written to {}: fill in the guess column", out.display()));
        }
        Command::Download { categories, dir, endpoint, cache_dir } => {
            let categories: Vec<String> = if categories.iter().any(|c| c == "all8") {
                pricer::hub::ORIGINAL_CATEGORIES.iter().map(|s| (*s).to_owned()).collect()
            } else {
                categories
            };
            let opts = pricer::hub::HubOptions { endpoint, cache_dir, token: None };
            let ctx = stderr_progress();
            for c in &categories {
                let path = pricer::hub::download_category(c, dir.as_deref(), &opts, &ctx)?;
                print_out(&path.display().to_string());
            }
        }
    }
    Ok(())
}

/// The comparison table: one row per pricer, best error first.
/// A path made absolute (a saved set must not depend on the folder it is opened from).
fn absolute(p: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned())
}

/// 95% bootstrap intervals per pricer and the paired bootstrap of the best against the others.
fn intervals_table(c: &pricer::pricers::compare::Comparison) -> Result<String> {
    use pricer::pricers::bootstrap;
    let b = c.bootstrap(bootstrap::DEFAULT_RESAMPLES, bootstrap::DEFAULT_SEED, &JobCtx::default())?;
    let order = pricer::pricers::compare::by_error(c);
    let mut text = format!(
        "\n95% percentile bootstrap, {} resamples of the {} shared items ({:.2}s)\n{:<32} {:>24} {:>20}",
        b.resamples, b.n, b.secs, "pricer", "error [95%]", "hits [95%]"
    );
    for &k in &order {
        let (e, h) = (b.error_ci(k), b.hits_ci(k));
        let m = &c.evals[k].metrics;
        text.push_str(&format!(
            "\n{:<32} {:>8.2} [{:>6.2}, {:>6.2}] {:>5.1}% [{:>4.1}, {:>4.1}]",
            truncate(&c.evals[k].name, 32),
            m.error,
            e.lo,
            e.hi,
            m.hits_percent,
            h.lo,
            h.hi
        ));
    }
    if let Some((&best, rest)) = order.split_first() {
        for &k in rest {
            let (a, o) = (&c.evals[best], &c.evals[k]);
            let d =
                b.paired(best, k, (a.metrics.error, o.metrics.error), (a.metrics.hits_percent, o.metrics.hits_percent));
            text.push_str(&format!(
                "\n{} − {}: error {:+.2} [{:+.2}, {:+.2}], hits {:+.1} pp [{:+.1}, {:+.1}]: {}",
                a.name,
                o.name,
                d.error_diff,
                d.error_ci.lo,
                d.error_ci.hi,
                d.hits_diff,
                d.hits_ci.lo,
                d.hits_ci.hi,
                d.verdict(&a.name, &o.name)
            ));
        }
    }
    Ok(text)
}

fn compare_table(c: &pricer::pricers::compare::Comparison) -> String {
    let mut text = format!(
        "{:<32} {:>9} {:>6} {:>6} {:>9} {:>9} {:>7} {:>7} {:>9} {:>5} {:>5} {:>8} {:>8}",
        "pricer", "error", "rmsle", "hits", "rmse", "median", "r2", "mape", "bias", "unp", "n", "fit s", "pred s"
    );
    for k in pricer::pricers::compare::by_error(c) {
        let e = &c.evals[k];
        let m = &e.metrics;
        text.push_str(&format!(
            "\n{:<32} {:>9.2} {:>6.2} {:>5.1}% {:>9.2} {:>9.2} {:>7.3} {:>6.1}% {:>+9.2} {:>5} {:>5} {:>8.2} {:>8.2}",
            truncate(&e.name, 32),
            m.error,
            m.rmsle,
            m.hits_percent,
            m.rmse,
            m.median_error,
            m.r2,
            m.mape,
            m.bias,
            m.unparsable,
            m.n,
            e.fit_seconds,
            e.predict_seconds
        ));
    }
    text
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}

/// Writes to stdout; a closed pipe (`pricer stats … | head`) is not an error worth a panic.
fn print_out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.write_all(b"\n"));
}

fn print_stats(stats: &TableStats, hist: &pricer::stats::Histogram) {
    use std::fmt::Write;
    let mut text = String::new();
    let _ = writeln!(text, "items: {}", stats.n_items);
    for (name, s) in [("price ($)", &stats.price), ("tokens", &stats.tokens), ("prompt chars", &stats.prompt_chars)] {
        let _ = writeln!(
            text,
            "{name:<13} mean {:>9.2}  std {:>9.2}  min {:>8.2}  p25 {:>8.2}  median {:>8.2}  p75 {:>8.2}  max {:>8.2}",
            s.mean, s.std, s.min, s.p25, s.median, s.p75, s.max
        );
    }
    let _ = writeln!(text, "categories: {}", stats.categories.len());
    for (c, n) in &stats.categories {
        let _ = writeln!(text, "  {c:<30} {n:>9}  {:5.1}%", *n as f64 / stats.n_items as f64 * 100.0);
    }
    let _ = writeln!(text, "price histogram:");
    let max = hist.counts.iter().copied().max().unwrap_or(1).max(1);
    for (i, &n) in hist.counts.iter().enumerate() {
        let bar = "#".repeat((n * 50 / max) as usize);
        let _ = writeln!(text, "  ${:>6.0}–{:<6.0} {n:>9} {bar}", hist.edges[i], hist.edges[i + 1]);
    }
    print_out(text.trim_end());
}
