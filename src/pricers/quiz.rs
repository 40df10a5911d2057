//! "Price them yourself": the human baseline of the original, as a quiz. The person sees one test
//! prompt at a time and types a guess; every answer is written at once (atomically) into the same
//! CSV that `pricer human-csv` writes (`index, title, category, prompt, guess`), so a quiz closed
//! half-way resumes at the first blank guess, and the answered items become an evaluation through
//! the `human` pricer like any other.

use super::import::parse_number;
use crate::items::ItemTable;
use crate::{Error, Result};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One question of the quiz.
#[derive(Clone, Debug, PartialEq)]
pub struct Question {
    /// Test index.
    pub index: usize,
    /// Title.
    pub title: String,
    /// Category.
    pub category: String,
    /// The test prompt shown (ends with `Price is $`).
    pub prompt: String,
    /// The true price (never written to the file; shown after an answer when asked for).
    pub truth: f64,
    /// The answer, once given.
    pub guess: Option<f64>,
}

/// A quiz over test items, backed by its CSV.
#[derive(Clone, Debug)]
pub struct Quiz {
    /// The CSV holding the answers.
    pub file: PathBuf,
    /// The questions, in test order.
    pub questions: Vec<Question>,
}

impl Quiz {
    /// Opens the quiz of test items `range` in `file`: reads the answers given so far when the
    /// file exists (it must hold the same items), else writes it with blank guesses.
    pub fn open(test: &ItemTable, range: Range<usize>, file: &Path) -> Result<Self> {
        let range = range.start.min(test.len())..range.end.min(test.len());
        if range.is_empty() {
            return Err(Error::InvalidInput("the quiz needs at least one test item".into()));
        }
        let mut questions: Vec<Question> = range
            .map(|i| {
                let it = test.get(i);
                Question {
                    index: i,
                    title: it.title.to_owned(),
                    category: it.category.to_owned(),
                    prompt: it.test_prompt().to_owned(),
                    truth: it.price,
                    guess: None,
                }
            })
            .collect();
        if file.exists() {
            let mut rd = csv::Reader::from_path(file).map_err(|e| csv_error(file, &e))?;
            let header = rd.headers().map_err(|e| csv_error(file, &e))?.clone();
            let col = |name: &str| {
                header.iter().position(|h| h == name).ok_or_else(|| {
                    Error::InvalidInput(format!("{}: no `{name}` column: not a quiz file", file.display()))
                })
            };
            let (ci, ct, cg) = (col("index")?, col("title")?, col("guess")?);
            for (row, rec) in rd.records().enumerate() {
                let rec = rec.map_err(|e| csv_error(file, &e))?;
                let at = || format!("{} row {}", file.display(), row + 2);
                let index: usize = rec
                    .get(ci)
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or_else(|| Error::InvalidInput(format!("{}: the index is not a whole number", at())))?;
                let Some(q) = questions.iter_mut().find(|q| q.index == index) else { continue };
                if rec.get(ct).map(str::trim) != Some(q.title.trim()) {
                    return Err(Error::InvalidInput(format!(
                        "{}: item {index} is `{}` there but `{}` in the test items: the quiz file belongs to \
                         other test items (choose another file)",
                        at(),
                        rec.get(ct).unwrap_or(""),
                        q.title
                    )));
                }
                let g = rec.get(cg).unwrap_or("").trim();
                if !g.is_empty() {
                    q.guess = Some(
                        parse_number(g)
                            .ok_or_else(|| Error::InvalidInput(format!("{}: guess `{g}` is not a number", at())))?,
                    );
                }
            }
        }
        let quiz = Self { file: file.to_owned(), questions };
        quiz.save()?;
        Ok(quiz)
    }

    /// Position of the first question without an answer (`None`: all answered).
    pub fn next(&self) -> Option<usize> {
        self.questions.iter().position(|q| q.guess.is_none())
    }

    /// Answers counted from the start without a gap (what can be scored).
    pub fn answered_prefix(&self) -> usize {
        self.next().unwrap_or(self.questions.len())
    }

    /// Answers given.
    pub fn answered(&self) -> usize {
        self.questions.iter().filter(|q| q.guess.is_some()).count()
    }

    /// Records the answer to question `pos` and writes the file.
    pub fn answer(&mut self, pos: usize, guess: f64) -> Result<()> {
        if !guess.is_finite() || guess < 0.0 {
            return Err(Error::InvalidInput(format!("{guess} is not a price")));
        }
        let q = self
            .questions
            .get_mut(pos)
            .ok_or_else(|| Error::InvalidInput(format!("the quiz has no question {pos}")))?;
        q.guess = Some(guess);
        self.save()
    }

    /// Writes the CSV atomically.
    pub fn save(&self) -> Result<()> {
        crate::atomic::write_atomic(&self.file, |w| {
            let mut csv = csv::Writer::from_writer(w);
            let io = std::io::Error::other;
            csv.write_record(["index", "title", "category", "prompt", "guess"]).map_err(io)?;
            for q in &self.questions {
                let g = q.guess.map(|g| g.to_string()).unwrap_or_default();
                csv.write_record([q.index.to_string().as_str(), &q.title, &q.category, &q.prompt, &g]).map_err(io)?;
            }
            csv.flush()
        })
    }
}

fn csv_error(path: &Path, e: &csv::Error) -> Error {
    Error::InvalidInput(format!("{}: {e}", path.display()))
}
