//! Pricer Studio, the desktop app. Opens on the built-in synthetic demo.

/// mimalloc keeps freed memory for reuse: training allocates and frees large tensors every step,
/// which with the system allocator costs a page fault per page each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use pricer::app::{EframeApp, StartOptions, Tab, widgets::ScreenshotPlan};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "pricer-studio",
    version,
    about = "Pricer Studio: curate, explore, rebalance and export product pricing data."
)]
struct Args {
    /// Tab to open: dataset, charts, sampling, finetune or compare.
    #[arg(long)]
    tab: Option<String>,
    /// Write a PNG of the window once the demo is loaded, then quit (ignores saved settings).
    #[arg(long)]
    screenshot: Option<PathBuf>,
    /// Raw lines of the built-in synthetic demo (default 12,000).
    #[arg(long)]
    demo_lines: Option<usize>,
    /// Cap per slot of the sampling recipe shown at start (default: the original 1200).
    #[arg(long)]
    cap: Option<usize>,
    /// Folder of fine-tuning runs shown on the Fine-tune tab (default: runs).
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// A pricer set (`pricer compare --save-set`, or Save on the Compare tab) shown on the Compare tab.
    #[arg(long)]
    pricer_set: Option<PathBuf>,
    /// Select this shared item (0 = the first) on the Compare tab once the set is shown.
    #[arg(long)]
    select_item: Option<usize>,
    /// The Compare tab's view: scatters, items, breakdowns or quiz.
    #[arg(long)]
    compare_view: Option<String>,
    /// Window size, e.g. 1280x800.
    #[arg(long, default_value = "1440x900")]
    size: String,
    /// Files to open instead of the demo: raw metadata, curated items, or your own table (a CSV,
    /// TSV, Parquet, JSON-lines or Arrow file not in Amazon's layout opens the column mapping).
    files: Vec<PathBuf>,
}

/// `pricer-studio train --config F | --resume DIR [--max-steps N]`: the same training command as
/// `pricer train`, so the app can start a run as a separate process of itself when the `pricer`
/// binary is not beside it.
fn train_subcommand() -> Option<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("train") {
        return None;
    }
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let config = value("--config").map(PathBuf::from);
    let resume = value("--resume").map(PathBuf::from);
    let max_steps = value("--max-steps").and_then(|s| s.parse().ok());
    let ctx = pricer::jobs::JobCtx::default().with_log(|_, text| eprintln!("{text}"));
    let on_start = |dir: &std::path::Path| println!("run folder: {}", dir.display());
    match pricer::finetune::train::run_command(config.as_deref(), resume.as_deref(), max_steps, &ctx, &on_start) {
        Ok((_, outcome, step)) => {
            println!("{outcome:?} at step {step}");
            Some(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Some(1)
        }
    }
}

fn main() -> eframe::Result {
    if let Some(code) = train_subcommand() {
        std::process::exit(code);
    }
    let args = Args::parse();
    let screenshot = args.screenshot.as_deref().map(ScreenshotPlan::new);
    // Load the tokenizer while the window and GL context come up: the demo needs it first thing.
    let _ = std::thread::Builder::new()
        .name("tokenizer warm-up".into())
        .spawn(|| pricer::tokenizer::PriceTokenizer::llama31().map(drop));
    let start = StartOptions {
        tab: args.tab.as_deref().map(|t| Tab::parse(t).unwrap_or_default()),
        demo_lines: args.demo_lines,
        cap: args.cap,
        runs_dir: args.runs_dir.clone(),
        pricer_set: args.pricer_set.clone(),
        select_item: args.select_item,
        compare_view: args.compare_view.as_deref().and_then(pricer::app::compare_tab::View::parse),
        open: args.files.clone(),
    };
    let (w, h) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .unwrap_or((1440.0, 900.0));
    let fresh = screenshot.is_some();
    let screenshot_state = std::env::temp_dir().join("pricer-studio-screenshot-state");
    if fresh {
        // Start every screenshot from defaults, not from what the last one left (column widths…).
        let _ = std::fs::remove_file(&screenshot_state).or_else(|_| std::fs::remove_dir_all(&screenshot_state));
    }
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([w, h])
            .with_min_inner_size([900.0, 600.0])
            .with_title("Pricer Studio")
            .with_drag_and_drop(true),
        persist_window: !fresh,
        persistence_path: if fresh { Some(screenshot_state) } else { None },
        ..Default::default()
    };
    eframe::run_native(
        "pricer-studio",
        options,
        Box::new(move |cc| Ok(Box::new(EframeApp::new(cc, screenshot, start)))),
    )
}
