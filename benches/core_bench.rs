//! Benchmarks of the core, with the targets of the foundation issue:
//! - curation throughput on ≥ 200,000 realistic raw lines, side by side: the tokenize-only floor
//!   of `tokenizers` 0.23 (the reference engine) and of 1.0.0-rc.3 (the fast one), full curation
//!   on each, on 1 and on all cores, and the original Python pipeline
//!   (`tools/reference_curate.py`, one process per core; target: ours ≥ 6× faster);
//! - memory of the curated table for 2.8M items (target ≤ 2 bytes per byte of prompt text);
//! - one balancing pass over 2.8M items (target ≤ 50 ms);
//! - a 100-bin histogram of 2.8M prices (target ≤ 5 ms);
//! - reading a curated-items Parquet file of 1.37M items written by `items_io::write_items`
//!   (target ≤ 1 s).
//!
//! `cargo bench --bench core_bench -- [stages] [curation] [memory] [balance] [histogram] [parquet]` (all by default;
//! `--lines N` sets the raw lines of the curation run). Prints one result line per measurement.

// The app's allocator, so the numbers are the app's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use pricer::curate::Curator;
use pricer::items::ItemTable;
use pricer::jobs::JobCtx;
use pricer::load::{ReadOptions, Source, parse_line};
use pricer::sampling::{BalanceParams, SlotCategoryCounts, balance, preview};
use pricer::stats::{Bins, histogram, price_histogram};
use pricer::text::{py_len, py_prefix, scrub};
use pricer::tokenizer::PriceTokenizer;
use rayon::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const N_ITEMS: usize = 2_800_000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn proc_status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The texts the pipeline tokenizes: records with a price in range and contents long enough.
fn texts_to_tokenize(raw: &[u8]) -> Vec<String> {
    raw.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| parse_line(l).ok())
        .filter_map(|r| {
            let price = r.price.parse()?;
            if !(0.5..=999.49).contains(&price) {
                return None;
            }
            let contents = Curator::contents(&r);
            if py_len(&contents) <= 300 {
                return None;
            }
            Some(format!("{}\n{}", scrub(&r.title), scrub(py_prefix(&contents, 1120))))
        })
        .collect()
}

/// Seconds the original pipeline (`tools/reference_curate.py`, Hugging Face `tokenizers` from
/// pip) takes on `raw` split into `processes` parts run at once, and the items it kept; `None`
/// when python3 with `tokenizers` is not installed.
fn python_reference(raw: &[u8], processes: usize) -> Option<(f64, usize)> {
    let ok = std::process::Command::new("python3").args(["-c", "import tokenizers"]).output().ok()?.status.success();
    if !ok {
        println!("python reference: skipped (pip install tokenizers)");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("pricer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let per = lines.len().div_ceil(processes);
    let parts: Vec<_> = lines
        .chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let path = dir.join(format!("part{i}.jsonl"));
            std::fs::write(&path, chunk.join(&b'\n')).expect("write part");
            path
        })
        .collect();
    let root = env!("CARGO_MANIFEST_DIR");
    let t0 = Instant::now();
    let children: Vec<_> = parts
        .iter()
        .map(|p| {
            std::process::Command::new("python3")
                .arg("tools/reference_curate.py")
                .arg(p)
                .current_dir(root)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("python3")
        })
        .collect();
    let mut kept = 0;
    for child in children {
        let out = child.wait_with_output().expect("python reference");
        assert!(out.status.success(), "tools/reference_curate.py failed");
        kept += out.stdout.split(|&b| b == b'\n').filter(|l| l.split(|&b| b == b'\t').nth(1) == Some(b"kept")).count();
    }
    let secs = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Some((secs, kept))
}

/// Curation side by side on one file: the tokenize-only floors of both engines (`tokenizers` 0.23,
/// the reference, and 1.0.0-rc.3, the fast one), full curation on each, on 1 and on all cores,
/// and the original Python pipeline in as many processes as there are cores.
fn bench_curation(n_lines: usize) {
    let raw: Arc<[u8]> = pricer::demo::demo_bytes(n_lines, 42).into();
    let texts = texts_to_tokenize(&raw);
    let fast = Curator::original().expect("tokenizer");
    let reference =
        Curator::new(PriceTokenizer::llama31_reference().expect("tokenizer"), Default::default()).expect("tokenizer");
    assert_eq!(fast.tokenizer().engine(), "tokenizers 1.0.0-rc.3");
    let mb = raw.len() as f64 / 1e6;
    let threads_all = rayon::current_num_threads();
    let mut ours_all = 0.0;
    let mut kept = 0;
    for threads in [1, threads_all] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        let mut line = format!("curation  threads={threads} lines={n_lines} ({mb:.0} MB) texts={}", texts.len());
        let mut secs = [0.0f64; 2];
        for (k, curator) in [&reference, &fast].into_iter().enumerate() {
            let tok = curator.tokenizer().clone();
            // Warm the tokenizer's cache the same way for both measurements.
            pool.install(|| texts.par_iter().take(2000).for_each(|t| drop(tok.encode(t))));
            let t0 = Instant::now();
            let n_tokens: usize =
                pool.install(|| texts.par_iter().map(|t| tok.encode(t).map_or(0, |ids| ids.len())).sum());
            let floor = t0.elapsed().as_secs_f64();
            let src = Source::from_bytes("bench.jsonl", raw.clone(), None);
            let t0 = Instant::now();
            let (table, report) = pool.install(|| {
                curator.curate_sources(&[src], ReadOptions::default(), &JobCtx::default()).expect("curate")
            });
            let full = t0.elapsed().as_secs_f64();
            assert_eq!(report.kept as usize, table.len());
            kept = table.len();
            secs[k] = full;
            line += &format!(
                " | {}: tokenize-only floor {floor:.2}s ({:.0} lines/s, {n_tokens} tokens), curation {full:.2}s ({:.0} lines/s, {:.1} MB/s), {:.2}x its floor",
                tok.engine(),
                n_lines as f64 / floor,
                n_lines as f64 / full,
                mb / full,
                full / floor,
            );
        }
        line += &format!(" | kept={kept} | fast engine {:.2}x faster", secs[0] / secs[1]);
        println!("{line}");
        ours_all = secs[1];
    }
    if let Some((py, py_kept)) = python_reference(&raw, threads_all) {
        println!(
            "curation  python reference (tools/reference_curate.py, {threads_all} processes, HF tokenizers from pip) {py:.2}s ({:.0} lines/s) kept={py_kept} | ours on {threads_all} threads {:.2}x faster (target >= 6x)",
            n_lines as f64 / py,
            py / ours_all,
        );
        assert_eq!(py_kept, kept, "the Python pipeline kept other items");
    }
}

/// Where one thread's curation time goes, stage by stage, on the same raw lines (the profile
/// behind issue 16's third part): JSON parsing (with the details' Python `json.dumps`), the
/// contents with the details removals, `scrub`, encode, decode, and whole `Curator::curate`.
fn bench_curation_stages(n_lines: usize) {
    let raw = pricer::demo::demo_bytes(n_lines, 42);
    let curator = Curator::original().expect("tokenizer");
    let tok = curator.tokenizer().clone();
    // Stage by stage, record by record, nothing kept (as curation streams).
    let mut secs = [0.0f64; 5];
    let mut lap = |k: usize, t0: &mut Instant| {
        let now = Instant::now();
        secs[k] += (now - *t0).as_secs_f64();
        *t0 = now;
    };
    let (mut n, mut priced, mut tokenized, mut decoded) = (0, 0, 0, 0);
    for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        n += 1;
        let mut t0 = Instant::now();
        let Ok(r) = parse_line(line) else { continue };
        lap(0, &mut t0);
        if !r.price.parse().is_some_and(|p| (0.5..=999.49).contains(&p)) {
            continue;
        }
        priced += 1;
        let mut t0 = Instant::now();
        let contents = Curator::contents(&r);
        lap(1, &mut t0);
        if py_len(&contents) <= 300 {
            continue;
        }
        tokenized += 1;
        let mut t0 = Instant::now();
        let text = format!("{}\n{}", scrub(&r.title), scrub(py_prefix(&contents, 1120)));
        lap(2, &mut t0);
        let ids = tok.encode(&text).expect("encode");
        lap(3, &mut t0);
        if ids.len() > 150 {
            decoded += tok.decode(&ids[..ids.len().min(160)]).expect("decode").len();
            lap(4, &mut t0);
        }
    }
    let records: Vec<_> = raw
        .split(|&b| b == b'\n')
        .filter_map(|l| parse_line(l).ok())
        .filter(|r| r.price.parse().is_some_and(|p| (0.5..=999.49).contains(&p)))
        .collect();
    let t0 = Instant::now();
    let kept = records.iter().filter(|r| matches!(curator.curate(r, "x"), Ok(Ok(_)))).count();
    let curate = t0.elapsed().as_secs_f64();
    let ms = |s: f64| s * 1e3;
    println!(
        "curation stages  threads=1 lines={n} priced={priced} tokenized={tokenized} kept={kept} (decoded {decoded} bytes) | parse_line {:.0} ms | contents {:.0} ms | scrub {:.0} ms | encode {:.0} ms | decode {:.0} ms | Curator::curate on the priced records (contents to prompt) {:.0} ms",
        ms(secs[0]),
        ms(secs[1]),
        ms(secs[2]),
        ms(secs[3]),
        ms(secs[4]),
        ms(curate),
    );
}

/// A table of `n` items made from curated demo items (prices jittered so slots fill like a
/// real catalogue).
fn big_table(n: usize) -> ItemTable {
    // Real curated items (../shared) when present, so titles and details have real sizes;
    // otherwise curated demo items.
    let real = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real/curated_items.jsonl");
    let (base, origin) = if real.exists() {
        (pricer::items_io::read_items(&real).expect("real items").0, "real curated items")
    } else {
        let raw: Arc<[u8]> = pricer::demo::demo_bytes(40_000, 7).into();
        let curator = Curator::original().expect("tokenizer");
        let src = Source::from_bytes("seed.jsonl", raw, None);
        (curator.curate_sources(&[src], ReadOptions::default(), &JobCtx::default()).expect("curate").0, "demo items")
    };
    println!("memory    table built from {} {origin}, repeated with jittered prices", base.len());
    let rss_before = proc_status_kib("VmRSS:");
    let t0 = Instant::now();
    let table = ItemTable::repeated(&base, n);
    drop(base);
    let build = t0.elapsed();
    let rss_after = proc_status_kib("VmRSS:");
    let prompt_bytes = table.prompt_text_bytes() as f64;
    println!(
        "memory    items={n} prompt text {:.0} MB | table heap {:.0} MB = {:.2} bytes per prompt byte | RSS growth {:.0} MB = {:.2} bytes per prompt byte | peak RSS of process {:.0} MB (target <= 2.0) | built in {:.1}s",
        prompt_bytes / 1e6,
        table.heap_bytes() as f64 / 1e6,
        table.heap_bytes() as f64 / prompt_bytes,
        (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / 1e6,
        (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / prompt_bytes,
        proc_status_kib("VmHWM:") as f64 * 1024.0 / 1e6,
        build.as_secs_f64()
    );
    table
}

fn bench_balance(table: &ItemTable) {
    let params = BalanceParams::original();
    let _ = balance(table, &params);
    let runs: Vec<Duration> = (0..7)
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(balance(table, &params));
            t0.elapsed()
        })
        .collect();
    let n = balance(table, &params).len();
    let counts = SlotCategoryCounts::from_table(table, 1.0);
    let t0 = Instant::now();
    let p = preview(&counts, table.category_names(), &params);
    let preview_time = t0.elapsed();
    println!(
        "balance   items={} sampled={n} | full exact pass median {:.1} ms, worst {:.1} ms (target <= 50 ms) | count-table preview {:.3} ms (expected {:.0})",
        table.len(),
        median(runs.clone()).as_secs_f64() * 1e3,
        runs.iter().max().copied().unwrap_or_default().as_secs_f64() * 1e3,
        preview_time.as_secs_f64() * 1e3,
        p.total
    );
}

fn bench_histogram(table: &ItemTable) {
    let bins = Bins::Count { n: 100, min: 0.0, max: 1000.0 };
    let runs: Vec<Duration> = (0..21)
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(price_histogram(table, bins));
            t0.elapsed()
        })
        .collect();
    let float_runs: Vec<Duration> = (0..21)
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(histogram(table.prices(), bins));
            t0.elapsed()
        })
        .collect();
    let h = price_histogram(table, bins);
    assert_eq!(h.total(), histogram(table.prices(), bins).total());
    println!(
        "histogram items={} bins=100 total={} | cents path median {:.2} ms, worst {:.2} ms (target <= 5 ms) | float path median {:.2} ms",
        table.len(),
        h.total(),
        median(runs.clone()).as_secs_f64() * 1e3,
        runs.iter().max().copied().unwrap_or_default().as_secs_f64() * 1e3,
        median(float_runs).as_secs_f64() * 1e3,
    );
}

/// Reads a Parquet file of `n` curated items (written once by `write_items`) `runs` times: the
/// time of each read, their median, and the process's peak RSS.
fn bench_parquet_read(n: usize, runs: usize) {
    // PRICER_BENCH_PARQUET reads a given file instead (e.g. one written by an earlier version).
    let path = std::env::var_os("PRICER_BENCH_PARQUET")
        .map_or_else(|| std::env::temp_dir().join(format!("pricer-bench-items-{n}.parquet")), std::path::PathBuf::from);
    if !path.exists() {
        let table = big_table(n);
        let t0 = Instant::now();
        pricer::items_io::write_items(&table, &path).expect("write parquet");
        println!("parquet   wrote {n} items to {} in {:.1}s", path.display(), t0.elapsed().as_secs_f64());
    }
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    let mut times = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let (table, errors) = pricer::items_io::read_items(&path).expect("read parquet");
        times.push(t0.elapsed());
        assert_eq!((table.len(), errors.len()), (n, 0));
        drop(table);
    }
    let each: Vec<String> = times.iter().map(|t| format!("{:.2}", t.as_secs_f64())).collect();
    // The first read of a process is what opening a file in the app costs (all its memory fresh).
    println!(
        "parquet   read {n} items ({:.0} MB file) first {:.2}s, then {:.2}s median of {runs} [{}] (target <= 1.0) | peak RSS {:.0} MB",
        size as f64 / 1e6,
        times[0].as_secs_f64(),
        median(times).as_secs_f64(),
        each.join(", "),
        proc_status_kib("VmHWM:") as f64 * 1024.0 / 1e6,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let lines = args.iter().position(|a| a == "--lines").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(200_000);
    let wants = |name: &str| {
        args.iter().all(|a| a.starts_with("--") || a.parse::<usize>().is_ok()) || args.iter().any(|a| a == name)
    };
    println!("machine: {} threads", rayon::current_num_threads());
    if wants("stages") {
        bench_curation_stages(lines);
    }
    if wants("curation") {
        bench_curation(lines);
    }
    if wants("memory") || wants("balance") || wants("histogram") {
        let table = big_table(N_ITEMS);
        if wants("balance") {
            bench_balance(&table);
        }
        if wants("histogram") {
            bench_histogram(&table);
        }
    }
    if wants("parquet") {
        bench_parquet_read(1_370_000, 5);
    }
}
