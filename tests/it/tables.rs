//! The user's own tables (issue 14): CSV, Parquet, JSON lines and Arrow files mapped onto the
//! curation's fields give the same items as Amazon's raw lines; prices in both decimal marks;
//! problems reported by line; guesses from column names; clear errors when a field is missing.

use crate::common::real_data;
use polars::prelude::*;
use pricer::dataset::{open_paths, open_paths_mapped};
use pricer::items::ItemTable;
use pricer::jobs::JobCtx;
use pricer::table::{
    CategoryMapping, ColumnInfo, DecimalMark, DetailsMapping, TableKind, TableMapping, TableSchema, TableSpec,
};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The 7 real raw rows (Hugging Face form) as plain values.
struct Row {
    title: String,
    description: Vec<String>,
    features: Vec<String>,
    details: String,
    price: Option<String>,
    category: String,
}

fn real_rows() -> Option<(PathBuf, Vec<Row>)> {
    let path = real_data("raw_meta_rows_hf_form.jsonl")?;
    let rows = crate::common::read_jsonl(&path)
        .into_iter()
        .map(|v| {
            let strings = |k: &str| -> Vec<String> {
                v[k].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
            };
            let price = v["price"].as_str().unwrap();
            Row {
                title: v["title"].as_str().unwrap().to_owned(),
                description: strings("description"),
                features: strings("features"),
                details: v["details"].as_str().unwrap().to_owned(),
                price: (price != "None").then(|| price.to_owned()),
                category: v["main_category"].as_str().unwrap().to_owned(),
            }
        })
        .collect();
    Some((path, rows))
}

fn items_of(table: &ItemTable) -> Vec<(String, String, f64, String, String, u32)> {
    table
        .iter()
        .map(|i| {
            (
                i.title.to_string(),
                i.category.to_string(),
                i.price,
                i.details().to_string(),
                i.prompt.to_string(),
                i.token_count,
            )
        })
        .collect()
}

fn open(paths: &[PathBuf]) -> pricer::dataset::Opened {
    open_paths(paths, &JobCtx::default()).unwrap()
}

/// The rows as a CSV with these column names: description and features joined into one text
/// cell each (lines kept), details as a JSON column, an empty price where there is none; a BOM
/// in front when asked.
fn write_csv(rows: &[Row], names: [&str; 6], bom: bool, path: &Path) {
    let mut bytes = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
    {
        let mut w = csv::Writer::from_writer(&mut bytes);
        w.write_record(names).unwrap();
        for r in rows {
            w.write_record([
                r.title.as_str(),
                &r.description.join("\n"),
                &r.features.join("\n"),
                &r.details,
                r.price.as_deref().unwrap_or(""),
                &r.category,
            ])
            .unwrap();
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// The rows as a polars frame: features and description as list columns, price as a number.
fn shop_frame(rows: &[Row]) -> DataFrame {
    let list = |f: &dyn Fn(&Row) -> &Vec<String>| -> Series {
        let parts: Vec<Series> = rows.iter().map(|r| Series::new("".into(), f(r).clone())).collect();
        Series::new("x".into(), parts)
    };
    let mut desc = list(&|r| &r.description);
    desc.rename("desc".into());
    let mut feats = list(&|r| &r.features);
    feats.rename("bullet_points".into());
    df!(
        "product_name" => rows.iter().map(|r| r.title.clone()).collect::<Vec<_>>(),
        "attributes" => rows.iter().map(|r| r.details.clone()).collect::<Vec<_>>(),
        "list_price" => rows.iter().map(|r| r.price.as_ref().map(|p| p.parse::<f64>().unwrap())).collect::<Vec<_>>(),
        "department" => rows.iter().map(|r| r.category.clone()).collect::<Vec<_>>(),
    )
    .unwrap()
    .hstack(&[desc.into_column(), feats.into_column()])
    .unwrap()
}

#[test]
fn real_rows_as_a_shop_csv_curate_to_the_same_items_as_the_raw_lines() {
    let Some((raw, rows)) = real_rows() else { return };
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("shop.csv");
    let names = ["product_name", "desc", "bullet_points", "attributes", "list_price", "department"];
    write_csv(&rows, names, true, &csv);
    let from_raw = open(std::slice::from_ref(&raw));
    let from_csv = open(std::slice::from_ref(&csv));
    assert_eq!(from_raw.table.len(), 4, "the real rows keep 4 items");
    assert_eq!(items_of(&from_csv.table), items_of(&from_raw.table));
    assert_eq!(from_csv.report.no_price, from_raw.report.no_price);
    assert_eq!(from_csv.report.column_problems, 0);
    // The mapping came from the column names, and the user is told so.
    let note = from_csv.mapping_notes.join("\n");
    assert!(note.contains("by guess"), "{note}");
    assert!(note.contains("title=product_name,description=desc,features=bullet_points,details=attributes"), "{note}");
    assert!(note.contains("price=list_price,category=department"), "{note}");
}

#[test]
fn parquet_arrow_and_json_lines_tables_curate_to_the_same_items() {
    let Some((raw, rows)) = real_rows() else { return };
    let expected = items_of(&open(std::slice::from_ref(&raw)).table);
    let dir = tempfile::tempdir().unwrap();
    let mut frame = shop_frame(&rows);
    let pq = dir.path().join("shop.parquet");
    ParquetWriter::new(std::fs::File::create(&pq).unwrap()).finish(&mut frame).unwrap();
    let arrow = dir.path().join("shop.arrow");
    IpcWriter::new(std::fs::File::create(&arrow).unwrap()).finish(&mut frame).unwrap();
    // JSON lines with details as a nested object (its key order must survive) and the price as text.
    let jsonl = dir.path().join("shop.jsonl");
    let mut text = String::new();
    for r in &rows {
        let details: serde_json::Value = serde_json::from_str(&r.details).unwrap();
        let mut line = serde_json::Map::new();
        line.insert("name".into(), r.title.clone().into());
        line.insert("desc".into(), r.description.clone().into());
        line.insert("features".into(), r.features.clone().into());
        line.insert("specs".into(), details);
        line.insert("price".into(), r.price.clone().map_or(serde_json::Value::Null, |p| format!("${p}").into()));
        line.insert("category".into(), r.category.clone().into());
        text.push_str(&serde_json::Value::Object(line).to_string());
        text.push('\n');
    }
    std::fs::write(&jsonl, text).unwrap();
    for path in [&pq, &arrow, &jsonl] {
        let opened = open(std::slice::from_ref(path));
        assert_eq!(items_of(&opened.table), expected, "{}", path.display());
    }
    assert_eq!(TableKind::of(&arrow), Some(TableKind::Arrow));
}

/// A text long enough to pass the length rules (over 300 characters, over 150 tokens).
fn long_text(seed: usize) -> String {
    let words = ["sturdy", "steel", "frame", "with", "padded", "grip", "for", "daily", "use", "and", "easy", "storage"];
    (0..200).map(|i| words[(i * 7 + seed) % words.len()]).collect::<Vec<_>>().join(" ")
}

#[test]
fn prices_in_both_decimal_marks_a_missing_one_and_an_unreadable_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalogue.csv");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    {
        let mut w = csv::Writer::from_writer(&mut bytes);
        w.write_record(["name", "description", "price"]).unwrap();
        w.write_record(["Garden bench", &format!("First line of the bench\n{}", long_text(1)), "$1,299.00"]).unwrap();
        w.write_record(["Kitchen scale", &long_text(2), "1.299,00 €"]).unwrap();
        w.write_record(["Desk lamp", &long_text(3), ""]).unwrap();
        w.write_record(["Rain coat", &long_text(4), "call us"]).unwrap();
        w.write_record(["Tea pot", &long_text(5), "€ 12,50"]).unwrap();
    }
    std::fs::write(&path, bytes).unwrap();
    // Prices above the original's $999.49 are kept for this check.
    let opts = pricer::curate::CurateOptions { max_price_usd: 5000.0, ..Default::default() };
    let curator = pricer::curate::Curator::new(pricer::tokenizer::PriceTokenizer::llama31().unwrap(), opts).unwrap();
    let (spec, _, _) = pricer::table::spec_for(&path, None).unwrap();
    let source = spec.source(&path);
    let (table, report) = curator.curate_sources(&[source], Default::default(), &JobCtx::default()).unwrap();
    let opened = pricer::dataset::Opened {
        name: String::new(),
        table,
        report,
        malformed_reports: vec![],
        mapping_notes: vec![],
        tables: vec![],
    };
    let prices: Vec<f64> = opened.table.iter().map(|i| i.price).collect();
    // Most text prices end in `,dd`: comma is the guess, and `$1,299.00` (both marks) still reads.
    let head = pricer::table::inspect(&path, None, 100).unwrap();
    assert_eq!(TableMapping::guess(&head.schema, "x").decimal, DecimalMark::Comma);
    assert_eq!(prices, [1299.0, 1299.0, 12.5]);
    let first = opened.table.get(0);
    assert!(
        first.prompt.starts_with(
            "How much does this cost to the nearest dollar?\n\nGarden bench\nFirst line of the bench steel"
        ),
        "{}",
        first.prompt
    );
    assert!(first.prompt.ends_with("Price is $1299.00"));
    // All rows are categorised by the file's name.
    assert!(opened.table.iter().all(|i| i.category == "catalogue"));
    let r = &opened.report;
    assert_eq!((r.lines_read, r.kept, r.no_price, r.malformed), (5, 3, 2, 0));
    // The quoted two-line description makes the rain coat's record start on line 6.
    assert_eq!(r.column_problems, 1);
    assert_eq!(r.first_column_problems, ["catalogue.csv:6: price: `call us` is not a price"]);
    assert!(r.summary().contains("1 cells could not be read"), "{}", r.summary());
}

#[test]
fn a_semicolon_csv_with_comma_decimals_and_gathered_details() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.csv");
    let body = format!(
        "Artikel;Beschreibung;Preis;Marke;Farbe\n\"Stuhl\";\"{}\";\"49,90 €\";\"Holz AG\";\"\"\n\"Tisch\";\"{}\";\"949,00 €\";\"Holz AG\";\"braun\"\n",
        long_text(6),
        long_text(7)
    );
    std::fs::write(&path, body).unwrap();
    let head = pricer::table::inspect(&path, None, 100).unwrap();
    assert_eq!(head.schema.dialect.unwrap().separator, b';');
    let mut mapping = TableMapping::guess(&head.schema, "Furniture");
    assert_eq!(mapping.decimal, DecimalMark::Comma);
    mapping.apply_map("title=Artikel,description=Beschreibung,price=Preis,details=Marke+Farbe", &head.schema).unwrap();
    assert_eq!(mapping.details, DetailsMapping::Columns(vec!["Marke".into(), "Farbe".into()]));
    let spec = TableSpec { kind: head.schema.kind, dialect: head.schema.dialect, mapping };
    let opened =
        open_paths_mapped(std::slice::from_ref(&path), &[(path.clone(), spec)], None, &JobCtx::default()).unwrap();
    let items: Vec<(f64, String)> = opened.table.iter().map(|i| (i.price, i.details().to_string())).collect();
    assert_eq!(opened.report.kept, 2, "{}", opened.report.summary());
    // Gathered in table order, the empty colour left out, serialised like Python's json.dumps.
    assert_eq!(
        items,
        [(49.9, r#"{"Marke": "Holz AG"}"#.to_owned()), (949.0, r#"{"Marke": "Holz AG", "Farbe": "braun"}"#.to_owned())]
    );
    assert!(opened.table.iter().all(|i| i.category == "Furniture"));
}

fn schema(names: &[&str]) -> TableSchema {
    TableSchema {
        name: "t.csv".into(),
        kind: TableKind::Csv,
        dialect: None,
        columns: names
            .iter()
            .map(|n| ColumnInfo { name: (*n).into(), dtype: "str".into(), nulls: 0, samples: vec!["12.99".into()] })
            .collect(),
        rows: 1,
        whole_file: true,
        unreadable: 0,
        first_unreadable: vec![],
    }
}

#[test]
fn mappings_are_guessed_from_common_column_names() {
    let m = TableMapping::guess(&schema(&["id", "Product Name", "Long Description", "List Price", "Category"]), "x");
    assert_eq!(m.title.as_deref(), Some("Product Name"));
    assert_eq!(m.description, ["Long Description"]);
    assert_eq!(m.price.as_deref(), Some("List Price"));
    assert_eq!(m.category, CategoryMapping::Column("Category".into()));
    let m = TableMapping::guess(&schema(&["name", "desc", "sale_price", "features", "specs"]), "shop");
    assert_eq!(
        (m.title.as_deref(), m.description.as_slice(), m.price.as_deref(), m.features.as_slice()),
        (Some("name"), &["desc".to_owned()][..], Some("sale_price"), &["features".to_owned()][..])
    );
    // Samples that are not JSON objects: the column is gathered, not parsed.
    assert_eq!(m.details, DetailsMapping::Columns(vec!["specs".into()]));
    assert_eq!(m.category, CategoryMapping::Name("shop".into()));
    let m = TableMapping::guess(&schema(&["title", "cost", "department"]), "x");
    assert_eq!((m.title.as_deref(), m.price.as_deref()), (Some("title"), Some("cost")));
    assert_eq!(m.category, CategoryMapping::Column("department".into()));
    // `--map` round-trips.
    let mut back = TableMapping::guess(&schema(&["title", "cost", "department"]), "x");
    back.apply_map(&m.to_map_string(), &schema(&["title", "cost", "department"])).unwrap();
    assert_eq!(back, m);
}

#[test]
fn a_table_without_a_price_column_fails_naming_the_field_and_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stock.csv");
    std::fs::write(&path, "sku,colour,title\n1,red,Chair\n").unwrap();
    let err = open_paths(std::slice::from_ref(&path), &JobCtx::default()).err().expect("no price column").to_string();
    assert!(err.contains("no column is mapped to the price"), "{err}");
    assert!(err.contains("sku, colour, title"), "{err}");
    let head = pricer::table::inspect(&path, None, 10).unwrap();
    let mut m = TableMapping::guess(&head.schema, "x");
    m.apply_map("price=colour,title=name", &head.schema).unwrap();
    let err = m.validate(&head.schema).unwrap_err().to_string();
    assert!(err.contains("no column `name`"), "{err}");
}

#[test]
fn cli_inspects_a_table_and_curates_it_with_a_map() {
    let Some((raw, rows)) = real_rows() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Names the guess cannot place: the map says where everything is.
    let csv = dir.path().join("odd.csv");
    write_csv(&rows, ["a", "b", "c", "d", "e", "f"], false, &csv);
    let bin = env!("CARGO_BIN_EXE_pricer");
    let out = Command::new(bin).args(["inspect"]).arg(&csv).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("odd.csv (CSV, separator ,, header row): 6 columns, 7 (all) rows inspected"), "{stdout}");
    assert!(stdout.contains("not enough to curate"), "{stdout}");
    let items = dir.path().join("items.jsonl");
    let out = Command::new(bin)
        .arg("curate")
        .arg(&csv)
        .args(["--map", "title=a,description=b,features=c,details=d,price=e,category=f", "--out"])
        .arg(&items)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ours = open(&[items]);
    assert_eq!(items_of(&ours.table), items_of(&open(&[raw]).table));
    // Without a map there is no price column to guess: a clear error.
    let out =
        Command::new(bin).arg("curate").arg(&csv).args(["--out", "x.jsonl"]).current_dir(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--map price=COLUMN"));
}

#[test]
fn a_big_batch_is_mapped_in_parallel_parts_in_row_order() {
    // 3,000 rows: the reader maps them in several parts; problems and rows keep file order.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.csv");
    let mut text = String::from("name,description,price\n");
    for i in 0..3000 {
        let price = if [8, 1498, 2997].contains(&i) { "n/a".to_owned() } else { format!("{}.50", 10 + i % 50) };
        text.push_str(&format!("Item {i},\"{} {i}\",{price}\n", long_text(i)));
    }
    std::fs::write(&path, text).unwrap();
    let opened = open(std::slice::from_ref(&path));
    let r = &opened.report;
    assert_eq!((r.lines_read, r.column_problems, r.no_price), (3000, 3, 3));
    assert_eq!(
        r.first_column_problems,
        [
            "many.csv:10: price: `n/a` is not a price",
            "many.csv:1500: price: `n/a` is not a price",
            "many.csv:2999: price: `n/a` is not a price"
        ]
    );
    let titles: Vec<String> = opened.table.iter().map(|i| i.title.to_string()).collect();
    let expected: Vec<String> =
        (0..3000).filter(|i| ![8, 1498, 2997].contains(i)).map(|i| format!("Item {i}")).take(titles.len()).collect();
    assert_eq!(titles.len() as u64, r.kept);
    assert_eq!(titles, expected);
}

#[test]
fn progress_counts_a_tables_bytes_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.csv");
    let mut text = String::from("name,description,price\n");
    for i in 0..50 {
        text.push_str(&format!("Item {i},\"{}\",{}.99\n", long_text(i), 5 + i));
    }
    std::fs::write(&path, &text).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let ctx = JobCtx::with_progress(move |p| sink.lock().unwrap().push((p.done, p.total)));
    let (spec, _, _) = pricer::table::spec_for(&path, None).unwrap();
    let curator = pricer::curate::Curator::original().unwrap();
    let (table, _) = curator.curate_sources(&[spec.source(&path)], Default::default(), &ctx).unwrap();
    assert_eq!(table.len(), 50);
    let last = *seen.lock().unwrap().last().expect("progress reported");
    assert_eq!(last, (text.len() as u64, text.len() as u64));
}
