//! Balancing, preview, split and reproducible exports.

use pricer::export::ExportFormat;
use pricer::items::ItemTable;
use pricer::sampling::{BalanceParams, Recipe, Sample, SlotCategoryCounts, SplitParams, balance, preview, split};

/// A table with `n` items of `category` at `price` each (distinct prompts).
fn add(t: &mut ItemTable, category: &str, price: f64, n: usize) {
    for i in 0..n {
        let prompt = format!(
            "How much does this cost to the nearest dollar?\n\n{category} item {i} at {price}\n\nPrice is ${}.00",
            price.round_ties_even()
        );
        t.push_parts(&format!("{category} {i}"), category, price, "{}", &prompt, 170);
    }
}

fn fixture_table() -> ItemTable {
    let mut t = ItemTable::new();
    add(&mut t, "Automotive", 10.2, 1500); // slot 10: crowded, capped at 1200
    add(&mut t, "Electronics", 9.7, 1500); // slot 10 too
    add(&mut t, "Electronics", 20.0, 1000); // slot 20: under the cap, all taken
    add(&mut t, "Automotive", 300.0, 2000); // slot 300: above $240, all taken
    add(&mut t, "Appliances", 0.5, 50); // slot 0: never taken
    add(&mut t, "Appliances", 55.0, 30);
    t
}

fn count_in(t: &ItemTable, idx: &[usize], cat: &str, slot: u16) -> usize {
    idx.iter().filter(|&&i| t.get(i).category == cat && t.slots()[i] == slot).count()
}

#[test]
fn original_recipe_caps_crowded_cheap_slots_only() {
    let t = fixture_table();
    let s = balance(&t, &BalanceParams::original());
    assert_eq!(s.len(), 1200 + 1000 + 2000 + 30);
    assert_eq!(count_in(&t, &s, "Automotive", 10) + count_in(&t, &s, "Electronics", 10), 1200);
    assert_eq!(count_in(&t, &s, "Electronics", 20), 1000);
    assert_eq!(count_in(&t, &s, "Automotive", 300), 2000);
    assert_eq!(count_in(&t, &s, "Appliances", 0), 0);
    // Without replacement, in slot then table order.
    let mut sorted = s.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), s.len());
    assert!(s.windows(2).all(|w| t.slots()[w[0]] <= t.slots()[w[1]]));
    // Weight 5 vs 1: Electronics dominates the capped slot, near the expected share.
    let elec = count_in(&t, &s, "Electronics", 10) as f64;
    let counts = SlotCategoryCounts::from_table(&t, 1.0);
    let p = preview(&counts, t.category_names(), &BalanceParams::original());
    let code = t.category_names().iter().position(|c| c == "Electronics").unwrap();
    let expected_elec = expected_in_slot(&counts, 10, code);
    assert!((elec - expected_elec).abs() < 40.0, "drawn {elec}, expected {expected_elec}");
    assert!(elec > 900.0);
    assert_eq!(p.total, s.len() as f64);
}

/// Expected draw of one category in one slot, recovered from a preview run on a table that has
/// only that slot.
fn expected_in_slot(counts: &SlotCategoryCounts, slot: usize, code: usize) -> f64 {
    let nc = counts.n_categories;
    let mut only = counts.clone();
    for s in 0..only.n_slots() {
        if s != slot {
            for c in 0..nc {
                only.counts[s * nc + c] = 0;
                only.price_sums[s * nc + c] = 0.0;
            }
        }
    }
    let names = ["Automotive", "Electronics", "Appliances"].map(str::to_owned);
    preview(&only, &names[..nc], &BalanceParams::original()).per_category[code]
}

#[test]
fn every_constant_is_a_parameter() {
    let t = fixture_table();
    let p = BalanceParams { cap_per_slot: 100, take_all_from_usd: 1000.0, ..BalanceParams::original() };
    let s = balance(&t, &p);
    assert_eq!(count_in(&t, &s, "Automotive", 300), 100);
    assert_eq!(count_in(&t, &s, "Electronics", 20), 100);
    // Excluding a category with weight 0; lite takes one category, unbalanced.
    let mut p = BalanceParams::original();
    p.weights.insert("Electronics".into(), 0.0);
    let s = balance(&t, &p);
    assert!(s.iter().all(|&i| t.get(i).category != "Electronics"));
    let s = balance(&t, &BalanceParams::lite());
    assert_eq!(s.len(), 30);
    // Wider slots: $10 slots put 9.7 and 10.2 into slot 1; the cap then spans both.
    let p = BalanceParams { slot_width_usd: 10.0, ..BalanceParams::original() };
    let s = balance(&t, &p);
    assert_eq!(s.iter().filter(|&&i| t.prices()[i] < 11.0 && t.prices()[i] > 1.0).count(), 1200);
}

#[test]
fn same_seed_same_sample_other_seed_other_sample() {
    let t = fixture_table();
    let a = balance(&t, &BalanceParams::original());
    let b = balance(&t, &BalanceParams::original());
    let c = balance(&t, &BalanceParams { seed: 7, ..BalanceParams::original() });
    assert_eq!(a, b);
    assert_ne!(a, c);
    let sp = SplitParams { n_train: 3000, n_test: 200, seed: 42 };
    let (tr1, te1) = split(&a, &sp);
    let (tr2, te2) = split(&a, &sp);
    assert_eq!((tr1.len(), te1.len()), (3000, 200));
    assert_eq!((&tr1, &te1), (&tr2, &te2));
    assert!(te1.iter().all(|i| !tr1.contains(i)));
    let (tr3, _) = split(&a, &SplitParams { seed: 1, ..sp });
    assert_ne!(tr1, tr3);
    // Sizes larger than the sample shrink the train side, never the test side.
    let (tr, te) = split(&a[..500], &SplitParams { n_train: 400_000, n_test: 2_000, seed: 0 });
    assert_eq!((tr.len(), te.len()), (0, 500));
}

#[test]
fn exports_are_byte_identical_for_the_same_recipe_and_seed() {
    let t = fixture_table();
    let recipe =
        Recipe { split: SplitParams { n_train: 3000, n_test: 100, seed: 3 }, ..Recipe::preset("original").unwrap() };
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    for format in [ExportFormat::Parquet, ExportFormat::Jsonl, ExportFormat::Openai, ExportFormat::Csv] {
        let o1 = Sample::draw(&t, &recipe).export(&t, d1.path(), format, "x".as_ref()).unwrap();
        let o2 = Sample::draw(&t, &recipe).export(&t, d2.path(), format, "x".as_ref()).unwrap();
        assert_eq!((o1.n_train, o1.n_test), (3000, 100));
        for (a, b) in o1.files.iter().zip(&o2.files) {
            assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap(), "{}", a.display());
        }
    }
    let saved: pricer::sampling::SavedRecipe =
        serde_json::from_slice(&std::fs::read(d1.path().join("recipe.json")).unwrap()).unwrap();
    assert_eq!(saved.recipe, recipe);
    assert_eq!(saved.source_digest, pricer::sampling::table_digest(&t));
    assert_eq!(saved.n_test, 100);
}
