//! Loading raw inputs: formats, several files, categories, malformed lines, truncated gzip,
//! cancellation.

use pricer::curate::{CurationReport, Curator};
use pricer::items::ItemTable;
use pricer::jobs::JobCtx;
use pricer::load::{ReadOptions, Source};
use std::io::Write;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn curate(sources: &[Source], read: ReadOptions) -> (ItemTable, CurationReport) {
    Curator::original().unwrap().curate_sources(sources, read, &JobCtx::default()).unwrap()
}

fn prompts(t: &ItemTable) -> Vec<(String, String, f64, u32)> {
    t.iter().map(|i| (i.category.to_owned(), i.prompt.to_owned(), i.price, i.token_count)).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn jsonl_gz_and_small_chunks_give_the_same_items_in_order() {
    let plain = fixture("demo_300.jsonl");
    let (a, rep_a) = curate(&[Source::from_path(&plain, None)], ReadOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("demo.jsonl.gz");
    std::fs::write(&gz, gzip(&std::fs::read(&plain).unwrap())).unwrap();
    let small = ReadOptions { chunk_bytes: 10_000, ..ReadOptions::default() };
    let (b, rep_b) = curate(&[Source::from_path(&gz, None)], small);
    assert_eq!(prompts(&a), prompts(&b));
    assert_eq!(rep_a, rep_b);
    assert_eq!(rep_a.lines_read, 300);
    let golden =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/demo_300.tsv")).unwrap();
    assert_eq!(a.len(), golden.lines().filter(|l| l.contains("\tkept\t")).count());
    assert_eq!(
        rep_a.no_price + rep_a.out_of_range + rep_a.too_short + rep_a.too_few_tokens + rep_a.kept,
        rep_a.lines_read
    );
}

#[test]
fn hugging_face_parquet_rows_curate_like_their_raw_lines() {
    let (pq, rep) = curate(&[Source::from_path(fixture("demo_hf_form_60.parquet"), None)], ReadOptions::default());
    assert_eq!(rep.lines_read, 60);
    assert_eq!(rep.malformed, 0);
    let raw: Vec<u8> = std::fs::read_to_string(fixture("demo_300.jsonl"))
        .unwrap()
        .lines()
        .take(60)
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();
    let (js, _) = curate(&[Source::from_bytes("first60.jsonl", raw.into(), None)], ReadOptions::default());
    assert!(!pq.is_empty());
    assert_eq!(prompts(&pq), prompts(&js));
}

#[test]
fn category_from_file_name_then_given_then_main_category() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = std::fs::read_to_string(fixture("demo_300.jsonl"))
        .unwrap()
        .lines()
        .take(80)
        .map(|l| format!("{l}\n"))
        .collect();
    let a = dir.path().join("meta_Appliances.jsonl");
    let b = dir.path().join("other.jsonl");
    std::fs::write(&a, &lines).unwrap();
    std::fs::write(&b, &lines).unwrap();
    let (t, rep) = curate(&[Source::from_path(&a, None), Source::from_path(&b, None)], ReadOptions::default());
    assert_eq!(rep.lines_read, 160);
    let half = t.len() / 2;
    assert!(t.iter().take(half).all(|i| i.category == "Appliances"));
    // The second file has no category in its name: main_category, normalised to dataset names.
    let rest: Vec<&str> = t.iter().skip(half).map(|i| i.category).collect();
    assert!(rest.iter().all(|c| !c.contains(' ') && !c.contains('&')), "{rest:?}");
    assert!(rest.contains(&"Automotive"));
    let (t, _) = curate(&[Source::from_path(&a, Some("Given".into()))], ReadOptions::default());
    assert!(t.iter().all(|i| i.category == "Given"));
}

#[test]
fn malformed_lines_are_counted_with_line_numbers_and_loading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let good: Vec<String> =
        std::fs::read_to_string(fixture("demo_300.jsonl")).unwrap().lines().take(20).map(str::to_owned).collect();
    let mut bytes = Vec::new();
    for (i, l) in good.iter().enumerate() {
        bytes.extend_from_slice(l.as_bytes());
        bytes.extend_from_slice(if i % 2 == 0 { b"\r\n" } else { b"\n" });
        match i {
            2 => bytes.extend_from_slice(b"{\"title\": \"broken\n"), // line 4
            5 => bytes.extend_from_slice(b"{\"title\": 12, \"price\": 3.5}\n"), // line 8
            8 => bytes.extend_from_slice(b"{\"title\": \"\xff\xfe\", \"price\": 3.5}\n"), // line 12
            11 => {
                // line 16: a 50 MB line
                bytes.extend_from_slice(b"{\"title\": \"");
                bytes.extend(std::iter::repeat_n(b'x', 50 << 20));
                bytes.extend_from_slice(b"\"}\n");
            }
            14 => bytes.extend_from_slice(b"\n   \n"), // blank lines 21-22 are skipped, not errors
            _ => {}
        }
    }
    let path = dir.path().join("mixed.jsonl");
    std::fs::write(&path, &bytes).unwrap();
    let (t, rep) = curate(&[Source::from_path(&path, None)], ReadOptions::default());
    let (clean, clean_rep) = curate(
        &[Source::from_bytes("g.jsonl", (good.join("\n") + "\n").into_bytes().into(), None)],
        ReadOptions::default(),
    );
    assert_eq!(rep.malformed, 4, "{}", rep.summary());
    assert_eq!(rep.lines_read, 24);
    assert_eq!(rep.kept, clean_rep.kept);
    assert_eq!(prompts(&t), prompts(&clean));
    let lines: Vec<&str> = rep.first_errors.iter().map(|e| e.split(':').nth(1).unwrap()).collect();
    assert_eq!(lines, ["4", "8", "12", "16"], "{:?}", rep.first_errors);
    assert!(rep.first_errors.iter().all(|e| e.starts_with("mixed.jsonl:")));
    assert!(rep.first_errors[3].contains("longer than"));
    assert!(rep.summary().contains("4 malformed"));
}

#[test]
fn truncated_gzip_is_reported_and_what_was_read_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(fixture("demo_300.jsonl")).unwrap();
    let gz = gzip(&full);
    let path = dir.path().join("meta_Toys_and_Games.jsonl.gz");
    std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
    let (t, rep) =
        curate(&[Source::from_path(&path, None)], ReadOptions { chunk_bytes: 20_000, ..ReadOptions::default() });
    assert_eq!(rep.file_errors.len(), 1, "{}", rep.summary());
    assert!(rep.file_errors[0].contains("meta_Toys_and_Games.jsonl.gz"));
    assert!(rep.lines_read > 50 && rep.lines_read < 300, "{}", rep.lines_read);
    assert!(!t.is_empty());
    assert!(t.iter().all(|i| i.category == "Toys_and_Games"));
}

#[test]
fn missing_file_is_a_file_error_not_a_crash() {
    let (t, rep) = curate(&[Source::from_path("/nonexistent/meta_X.jsonl", None)], ReadOptions::default());
    assert!(t.is_empty());
    assert_eq!(rep.file_errors.len(), 1);
}

#[test]
fn cancellation_stops_between_chunks_and_keeps_what_was_curated() {
    let ctx = JobCtx::with_progress(|_| {});
    let cancel = ctx.cancel.clone();
    let ctx = JobCtx {
        progress: std::sync::Arc::new(move |p: &pricer::jobs::Progress| {
            if p.n_items > 0 {
                cancel.cancel();
            }
        }),
        ..ctx
    };
    let bytes: std::sync::Arc<[u8]> = pricer::demo::demo_bytes(3000, 1).into();
    let small = ReadOptions { chunk_bytes: 50_000, ..ReadOptions::default() };
    let curator = Curator::original().unwrap();
    let (t, rep) = curator.curate_sources(&[Source::from_bytes("demo.jsonl", bytes, None)], small, &ctx).unwrap();
    assert!(rep.cancelled);
    assert!(!t.is_empty());
    assert!(rep.lines_read < 3000);
    assert_eq!(t.len() as u64, rep.kept);
}

#[test]
fn opening_reports_item_file_rows_or_the_curation_summary() {
    use pricer::jobs::Level;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.jsonl");
    let mut bytes = pricer::demo::demo_bytes(300, 42);
    bytes.extend_from_slice(b"{not json\n");
    std::fs::write(&raw, &bytes).unwrap();
    let opened = pricer::dataset::open_paths(std::slice::from_ref(&raw), &Default::default()).unwrap();
    let notes = opened.notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].0, Level::Warning);
    assert!(notes[0].1.starts_with("raw.jsonl: ") && notes[0].1.contains("1 malformed"), "{notes:?}");
    // Curated items written back and read as they are: nothing to say.
    let items = dir.path().join("items.jsonl");
    pricer::items_io::write_items(&opened.table, &items).unwrap();
    let again = pricer::dataset::open_paths(&[items], &Default::default()).unwrap();
    assert!(again.notes().is_empty());
    assert_eq!(again.table.len(), opened.table.len());
}
