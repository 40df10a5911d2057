//! The Tester against hand-computed values.

use pricer::tester::{Colour, TestReport, read_predictions, score_one};

#[test]
fn metrics_and_report_line_match_hand_computed_values() {
    let pairs = [(100.0, 110.0), (50.0, 200.0), (10.0, 5.0), (300.0, 200.0)];
    let r = TestReport::new("Hand", &pairs, 250).unwrap();
    assert_eq!(r.items.len(), 4);
    assert_eq!(r.mean_error, 66.25);
    assert!((r.rmsle - 0.777_870_164_239_487_3).abs() < 1e-12);
    assert_eq!(r.hits, 2);
    let colours: Vec<Colour> = r.items.iter().map(|s| s.colour).collect();
    assert_eq!(colours, [Colour::Green, Colour::Red, Colour::Green, Colour::Orange]);
    assert_eq!(r.line(), "Hand Error=$66.25 RMSLE=0.78 Hits=50.0%");
    assert_eq!(
        TestReport::new("Big", &[(1.0, 2001.0)], 250).unwrap().line(),
        "Big Error=$2,000.00 RMSLE=6.91 Hits=0.0%"
    );
    // Only the first N count.
    assert_eq!(TestReport::new("N", &pairs, 1).unwrap().line(), "N Error=$10.00 RMSLE=0.09 Hits=100.0%");
}

#[test]
fn colour_rule_boundaries() {
    assert_eq!(score_one(100.0, 139.99).colour, Colour::Green); // error < 40
    assert_eq!(score_one(100.0, 140.0).colour, Colour::Orange); // 40 is not < 40, 0.4 is not < 0.2; 40 < 80
    assert_eq!(score_one(1000.0, 1040.0).colour, Colour::Green); // 0.04 < 0.2
    assert_eq!(score_one(100.0, 119.0).colour, Colour::Green);
    assert_eq!(score_one(500.0, 599.0).colour, Colour::Green); // 99/500 = 0.198 < 0.2
    assert_eq!(score_one(500.0, 600.0).colour, Colour::Orange); // 100/500 = 0.2, not < 0.2
    assert_eq!(score_one(500.0, 699.0).colour, Colour::Orange); // 0.398 < 0.4
    assert_eq!(score_one(500.0, 700.0).colour, Colour::Red);
    assert_eq!(score_one(100.0, 179.0).colour, Colour::Orange); // error 79 < 80
    assert_eq!(score_one(100.0, 180.0).colour, Colour::Red);
}

#[test]
fn csv_in_and_per_item_csv_out() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("preds.csv");
    std::fs::write(&input, "title,truth,guess\n\"A, b\",100,110\nB,50,$200\n").unwrap();
    let (pairs, extra) = read_predictions(&input).unwrap();
    assert_eq!(pairs, [(100.0, 110.0), (50.0, 200.0)]);
    let r = TestReport::new("T", &pairs, 250).unwrap();
    let out = dir.path().join("scored.csv");
    r.write_csv(&out, &extra).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "index,truth,guess,error,sle,colour,title");
    assert!(lines[1].starts_with("0,100,110,10.0000,") && lines[1].ends_with(",green,\"A, b\""), "{}", lines[1]);
    assert!(lines[2].contains(",red,B"));
    std::fs::write(&input, "truth,estimate\n1,2\n").unwrap();
    assert!(read_predictions(&input).unwrap_err().to_string().contains("`truth` and `guess`"));
    std::fs::write(&input, "truth,guess\n1,abc\n").unwrap();
    assert!(read_predictions(&input).unwrap_err().to_string().contains(":2: guess `abc`"));
}
