//! The Tester of design.md §6: per-item error, squared log error and colour class, and the report
//! line `{title} Error=$… RMSLE=… Hits=…%`, plus a few regression metrics beyond the original.

use crate::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// Colour class of one prediction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    /// `error < 40` or `error/truth < 0.2` (a hit).
    Green,
    /// `error < 80` or `error/truth < 0.4`.
    Orange,
    /// Everything else.
    Red,
}

impl Colour {
    /// The original rule.
    pub fn classify(error: f64, truth: f64) -> Self {
        if error < 40.0 || error / truth < 0.2 {
            Self::Green
        } else if error < 80.0 || error / truth < 0.4 {
            Self::Orange
        } else {
            Self::Red
        }
    }
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Green => "green",
            Self::Orange => "orange",
            Self::Red => "red",
        }
    }
}

/// One scored prediction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scored {
    /// True price.
    pub truth: f64,
    /// Predicted price.
    pub guess: f64,
    /// `|guess - truth|`.
    pub error: f64,
    /// `(ln(truth+1) - ln(guess+1))²` (guesses below 0 count as 0).
    pub sle: f64,
    /// Colour class.
    pub colour: Colour,
}

/// Scores one prediction.
pub fn score_one(truth: f64, guess: f64) -> Scored {
    let error = (guess - truth).abs();
    let log_error = (truth + 1.0).ln() - (guess.max(0.0) + 1.0).ln();
    Scored { truth, guess, error, sle: log_error * log_error, colour: Colour::classify(error, truth) }
}

/// The Tester's result over the first N items.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestReport {
    /// Title shown in the report line.
    pub title: String,
    /// Per-item scores, in input order.
    pub items: Vec<Scored>,
    /// Mean absolute error in USD.
    pub mean_error: f64,
    /// Root mean squared log error.
    pub rmsle: f64,
    /// Number of green items.
    pub hits: usize,
    /// Root mean squared error in USD (beyond the original).
    pub rmse: f64,
    /// Median absolute error in USD (beyond the original).
    pub median_error: f64,
    /// Coefficient of determination R² (beyond the original).
    pub r2: f64,
}

impl TestReport {
    /// Scores the first `size` pairs (all when fewer).
    pub fn new(title: &str, pairs: &[(f64, f64)], size: usize) -> Result<Self> {
        let n = size.min(pairs.len());
        if n == 0 {
            return Err(Error::InvalidInput("no predictions to score".into()));
        }
        let items: Vec<Scored> = pairs[..n].iter().map(|&(t, g)| score_one(t, g)).collect();
        let nf = n as f64;
        let mean_error = items.iter().map(|s| s.error).sum::<f64>() / nf;
        let rmsle = (items.iter().map(|s| s.sle).sum::<f64>() / nf).sqrt();
        let hits = items.iter().filter(|s| s.colour == Colour::Green).count();
        let rmse = (items.iter().map(|s| s.error * s.error).sum::<f64>() / nf).sqrt();
        let mut errs: Vec<f64> = items.iter().map(|s| s.error).collect();
        errs.sort_by(f64::total_cmp);
        let median_error = if n % 2 == 1 { errs[n / 2] } else { 0.5 * (errs[n / 2 - 1] + errs[n / 2]) };
        let mean_truth = items.iter().map(|s| s.truth).sum::<f64>() / nf;
        let ss_tot: f64 = items.iter().map(|s| (s.truth - mean_truth).powi(2)).sum();
        let ss_res: f64 = items.iter().map(|s| (s.truth - s.guess).powi(2)).sum();
        let r2 = if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { f64::NAN };
        Ok(Self { title: title.to_owned(), items, mean_error, rmsle, hits, rmse, median_error, r2 })
    }

    /// Hit rate in percent.
    pub fn hit_percent(&self) -> f64 {
        self.hits as f64 / self.items.len() as f64 * 100.0
    }

    /// The original report line: `{title} Error=${:,.2f} RMSLE={:,.2f} Hits={:.1f}%`.
    pub fn line(&self) -> String {
        report_line(&self.title, self.mean_error, self.rmsle, self.hit_percent())
    }

    /// Writes the per-item CSV (`index,truth,guess,error,sle,colour` plus any extra columns).
    pub fn write_csv(&self, path: &Path, extra: &ExtraColumns) -> Result<()> {
        crate::atomic::write_atomic(path, |w| {
            let mut csv = csv::Writer::from_writer(w);
            let mut header =
                vec!["index".to_owned(), "truth".into(), "guess".into(), "error".into(), "sle".into(), "colour".into()];
            header.extend(extra.iter().map(|(n, _)| n.clone()));
            csv.write_record(&header).map_err(std::io::Error::other)?;
            for (i, s) in self.items.iter().enumerate() {
                let mut row = vec![
                    i.to_string(),
                    s.truth.to_string(),
                    s.guess.to_string(),
                    format!("{:.4}", s.error),
                    format!("{:.6}", s.sle),
                    s.colour.name().to_owned(),
                ];
                row.extend(extra.iter().map(|(_, col)| col.get(i).cloned().unwrap_or_default()));
                csv.write_record(&row).map_err(std::io::Error::other)?;
            }
            csv.flush()
        })
    }
}

/// The original report line: `{title} Error=${:,.2f} RMSLE={:,.2f} Hits={:.1f}%`.
pub fn report_line(title: &str, mean_error: f64, rmsle: f64, hits_percent: f64) -> String {
    format!(
        "{title} Error=${} RMSLE={} Hits={hits_percent:.1}%",
        group_thousands(&format!("{mean_error:.2}")),
        group_thousands(&format!("{rmsle:.2}"))
    )
}

/// Inserts `,` thousands separators into a formatted decimal number (Python's `,` option).
pub fn group_thousands(s: &str) -> String {
    let (sign, rest) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = rest.split_once('.').map_or((rest, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Named columns of strings carried next to the scores (identifying columns).
pub type ExtraColumns = Vec<(String, Vec<String>)>;

/// Reads `truth,guess` pairs (and the other columns) from a CSV with a header row.
pub fn read_predictions(path: &Path) -> Result<(Vec<(f64, f64)>, ExtraColumns)> {
    let mut rdr = csv::Reader::from_path(path).map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
    let headers = rdr.headers().map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let (Some(ti), Some(gi)) = (col("truth"), col("guess")) else {
        return Err(Error::InvalidInput(format!(
            "{}: needs `truth` and `guess` columns, found: {}",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(", ")
        )));
    };
    let mut extra: Vec<(String, Vec<String>)> = headers
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != ti && i != gi)
        .map(|(_, h)| (h.to_owned(), Vec::new()))
        .collect();
    let mut pairs = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let line = n + 2;
        let rec = rec.map_err(|e| Error::InvalidInput(format!("{}:{line}: {e}", path.display())))?;
        let num = |i: usize, what: &str| -> Result<f64> {
            let s = rec.get(i).unwrap_or("").trim();
            s.trim_start_matches('$')
                .replace(',', "")
                .parse::<f64>()
                .map_err(|_| Error::InvalidInput(format!("{}:{line}: {what} `{s}` is not a number", path.display())))
        };
        pairs.push((num(ti, "truth")?, num(gi, "guess")?));
        let mut k = 0;
        for (i, v) in rec.iter().enumerate() {
            if i != ti && i != gi {
                extra[k].1.push(v.to_owned());
                k += 1;
            }
        }
    }
    Ok((pairs, extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group_thousands("1234567.89"), "1,234,567.89");
        assert_eq!(group_thousands("123.40"), "123.40");
        assert_eq!(group_thousands("-1000.00"), "-1,000.00");
    }
}
