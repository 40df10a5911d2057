//! Export formats and atomic writes.

use pricer::atomic::write_atomic;
use pricer::export::{ExportFormat, TextForm, export};
use pricer::items::{ItemTable, test_prompt};
use pricer::items_io::{read_items, write_items};
use std::path::Path;

fn demo_items() -> ItemTable {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo_300.jsonl");
    let src = pricer::load::Source::from_path(p, None);
    let curator = pricer::curate::Curator::original().unwrap();
    curator.curate_sources(&[src], Default::default(), &Default::default()).unwrap().0
}

#[test]
fn items_round_trip_through_jsonl_and_parquet() {
    let t = demo_items();
    let dir = tempfile::tempdir().unwrap();
    for name in ["items.jsonl", "items.parquet"] {
        let path = dir.path().join(name);
        write_items(&t, &path).unwrap();
        let (back, errors) = read_items(&path).unwrap();
        assert!(errors.is_empty());
        let a: Vec<_> = t.iter().map(|i| i.to_owned_item()).collect();
        let b: Vec<_> = back.iter().map(|i| i.to_owned_item()).collect();
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn training_formats_carry_the_right_text() {
    let t = demo_items();
    let idx: Vec<usize> = (0..t.len()).rev().collect();
    let dir = tempfile::tempdir().unwrap();

    let pq = dir.path().join("test.parquet");
    export(&t, &idx, TextForm::Test, ExportFormat::Parquet, &pq).unwrap();
    let (back, _) = read_items(&pq).unwrap();
    assert_eq!(back.len(), idx.len());
    for (k, &i) in idx.iter().enumerate() {
        assert_eq!(back.get(k).prompt, test_prompt(t.get(i).prompt));
        assert!(back.get(k).prompt.ends_with("\n\nPrice is $"));
        assert_eq!(back.get(k).price, t.get(i).price);
    }

    let jl = dir.path().join("train.jsonl");
    export(&t, &idx, TextForm::Train, ExportFormat::Jsonl, &jl).unwrap();
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(&jl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows[0]["text"], t.get(idx[0]).prompt);
    assert_eq!(rows[0]["price"], t.get(idx[0]).price);

    let oa = dir.path().join("chat.jsonl");
    export(&t, &idx, TextForm::Train, ExportFormat::Openai, &oa).unwrap();
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&oa).unwrap().lines().next().unwrap()).unwrap();
    let msgs = first["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(msgs[0]["content"], "You estimate prices of items. Reply only with the price, no explanation");
    let user = msgs[1]["content"].as_str().unwrap();
    assert!(user.starts_with("How much does this cost?\n\n"));
    assert!(!user.contains("Price is $"));
    assert_eq!(msgs[2]["content"], format!("Price is ${:.2}", t.get(idx[0]).price));

    let csv = dir.path().join("items.csv");
    export(&t, &idx, TextForm::Train, ExportFormat::Csv, &csv).unwrap();
    let mut rdr = csv::Reader::from_path(&csv).unwrap();
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        ["title", "category", "price", "token_count", "text"]
    );
    let rec = rdr.records().next().unwrap().unwrap();
    assert_eq!(&rec[4], t.get(idx[0]).prompt);
}

#[test]
fn failed_write_leaves_the_old_file_and_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    std::fs::write(&path, "old contents\n").unwrap();
    let err = write_atomic(&path, |w| {
        use std::io::Write;
        w.write_all(b"half a file")?;
        Err(std::io::Error::other("disk on fire"))
    });
    assert!(err.unwrap_err().to_string().contains("disk on fire"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old contents\n");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["out.jsonl"]);
    write_atomic(&path, |w| std::io::Write::write_all(w, b"new\n")).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
}

#[test]
fn reading_items_reports_progress_and_can_be_cancelled() {
    let t = demo_items();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.parquet");
    write_items(&t, &path).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let ctx = pricer::jobs::JobCtx::with_progress(move |p| s2.lock().unwrap().push((p.done, p.total)));
    let (back, _) = pricer::items_io::read_items_with(&path, &ctx).unwrap();
    assert_eq!(back.len(), t.len());
    assert_eq!(seen.lock().unwrap().first().copied(), Some((0, t.len() as u64)));
    ctx.cancel.cancel();
    let err = pricer::items_io::read_items_with(&path, &ctx).unwrap_err();
    assert!(matches!(err, pricer::Error::Cancelled));
}

/// Our curated-items Parquet files are LZ4_RAW-compressed (decompressing is about a third of
/// reading one; LZ4 decompresses several times faster than Snappy); a Snappy file written by
/// another tool reads to the same items.
#[test]
fn items_parquet_is_lz4_raw_and_snappy_files_read_the_same() {
    use parquet::file::reader::FileReader;
    use polars::prelude::*;
    let t = demo_items();
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.parquet");
    write_items(&t, &ours).unwrap();
    let reader = pricer::items_io::parquet_file(&ours).unwrap();
    let rg = reader.metadata().row_group(0);
    assert!((0..rg.num_columns()).all(|c| rg.column(c).compression() == parquet::basic::Compression::LZ4_RAW));
    let mut df = ParquetReader::new(std::fs::File::open(&ours).unwrap()).finish().unwrap();
    let snappy = dir.path().join("snappy.parquet");
    ParquetWriter::new(std::fs::File::create(&snappy).unwrap())
        .with_compression(ParquetCompression::Snappy)
        .with_row_group_size(Some(50))
        .finish(&mut df)
        .unwrap();
    let rg = pricer::items_io::parquet_file(&snappy).unwrap().metadata().row_group(0).clone();
    assert_eq!(rg.column(0).compression(), parquet::basic::Compression::SNAPPY);
    let (a, b) = (read_items(&ours).unwrap().0, read_items(&snappy).unwrap().0);
    let owned = |t: &ItemTable| t.iter().map(|i| i.to_owned_item()).collect::<Vec<_>>();
    assert_eq!(owned(&a), owned(&b));
    assert_eq!(owned(&a), owned(&t));
}

/// Cancel while row groups are being decoded ahead: the read stops with `Cancelled` (no hang,
/// whatever the workers were doing) and the progress seen before counts whole row groups.
#[test]
fn cancelling_a_parquet_read_midway_stops_the_workers() {
    use polars::prelude::*;
    let t = demo_items();
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.parquet");
    write_items(&t, &ours).unwrap();
    let mut df = ParquetReader::new(std::fs::File::open(&ours).unwrap()).finish().unwrap();
    let path = dir.path().join("many-groups.parquet");
    ParquetWriter::new(std::fs::File::create(&path).unwrap()).with_row_group_size(Some(10)).finish(&mut df).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let cancel = pricer::jobs::CancelToken::default();
    let (s2, c2) = (seen.clone(), cancel.clone());
    let mut ctx = pricer::jobs::JobCtx::with_progress(move |p| {
        s2.lock().unwrap().push(p.done);
        if p.done >= 30 {
            c2.cancel();
        }
    });
    ctx.cancel = cancel;
    let err = pricer::items_io::read_items_with(&path, &ctx).unwrap_err();
    assert!(matches!(err, pricer::Error::Cancelled), "{err}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, [0, 10, 20, 30], "one report per row group until the cancel");
    // Not cancelled, the same file reads whole.
    assert_eq!(read_items(&path).unwrap().0.len(), t.len());
}

/// A Parquet file of items from another tool (polars): optional columns with nulls, a `FLOAT`
/// price, an `INT64` token count, `text` for the prompt, several small row groups (read in
/// parallel batches and joined in file order), rows without a price or a prompt reported by row.
#[test]
fn parquet_items_from_another_writer_read_column_by_column() {
    use polars::prelude::*;
    let n = 23;
    let titles: Vec<Option<String>> = (0..n).map(|i| (i % 5 != 0).then(|| format!("Item {i}"))).collect();
    let prices: Vec<Option<f32>> = (0..n).map(|i| (i != 7).then_some(i as f32 + 0.5)).collect();
    let texts: Vec<Option<String>> =
        (0..n).map(|i| (i != 11).then(|| format!("How much?\n\nItem {i}\n\nPrice is ${i}.00"))).collect();
    let counts: Vec<i64> = (0..n).map(|i| 100 + i as i64).collect();
    let categories: Vec<String> = (0..n).map(|i| ["A", "B", "C"][i % 3].to_string()).collect();
    let mut df = df!(
        "title" => titles,
        "category" => categories,
        "price" => prices,
        "text" => texts,
        "token_count" => counts,
        "extra" => (0..n as i32).collect::<Vec<_>>(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.parquet");
    let f = std::fs::File::create(&path).unwrap();
    ParquetWriter::new(f).with_row_group_size(Some(4)).finish(&mut df).unwrap();

    let (t, errors) = read_items(&path).unwrap();
    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [8, 12], "rows 7 and 11 (0-based) lack a price or a prompt: {errors:?}");
    assert!(errors.iter().all(|e| e.message.contains("missing price or prompt")));
    let kept: Vec<usize> = (0..n).filter(|&i| i != 7 && i != 11).collect();
    assert_eq!(t.len(), kept.len());
    for (row, &i) in kept.iter().enumerate() {
        let it = t.get(row);
        assert_eq!(it.title, if i % 5 == 0 { String::new() } else { format!("Item {i}") }, "row {i}");
        assert_eq!(it.category, ["A", "B", "C"][i % 3]);
        assert_eq!(it.price, i as f64 + 0.5);
        assert_eq!(it.prompt, format!("How much?\n\nItem {i}\n\nPrice is ${i}.00"));
        assert_eq!(it.token_count, 100 + i as u32);
        assert_eq!(it.details(), "");
    }
}
