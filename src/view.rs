//! Views over an item table: filters (categories, price and token ranges, text search), sorting,
//! and the 2-D density grid of price vs. prompt length. Pure functions of the table, so the app
//! runs them off the UI thread and the tests check them directly.

use crate::items::ItemTable;
use crate::jobs::CancelToken;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Which rows to show.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filter {
    /// Only these categories (all when empty).
    pub categories: Vec<String>,
    /// Only prices in this inclusive range (USD).
    pub price_usd: Option<(f64, f64)>,
    /// Only token counts in this inclusive range.
    pub tokens: Option<(u32, u32)>,
    /// Only prompt lengths (characters) in this inclusive range.
    pub prompt_chars: Option<(u32, u32)>,
    /// Case-insensitive text in the title (or the prompt with `search_prompts`).
    pub search: String,
    /// Search the prompts too, not only titles.
    pub search_prompts: bool,
}

impl Filter {
    /// Whether the filter lets every row through.
    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
            && self.price_usd.is_none()
            && self.tokens.is_none()
            && self.prompt_chars.is_none()
            && self.search.trim().is_empty()
    }

    /// Short human description of each active part (for filter chips).
    pub fn chips(&self) -> Vec<(FilterPart, String)> {
        let mut out = Vec::new();
        if !self.categories.is_empty() {
            out.push((FilterPart::Categories, format!("category: {}", self.categories.join(", "))));
        }
        if let Some((lo, hi)) = self.price_usd {
            out.push((FilterPart::Price, format!("price ${lo:.2}–${hi:.2}")));
        }
        if let Some((lo, hi)) = self.tokens {
            out.push((FilterPart::Tokens, format!("tokens {lo}–{hi}")));
        }
        if let Some((lo, hi)) = self.prompt_chars {
            out.push((FilterPart::PromptChars, format!("length {lo}–{hi} chars")));
        }
        if !self.search.trim().is_empty() {
            out.push((FilterPart::Search, format!("\"{}\"", self.search.trim())));
        }
        out
    }

    /// Removes one part.
    pub fn clear(&mut self, part: FilterPart) {
        match part {
            FilterPart::Categories => self.categories.clear(),
            FilterPart::Price => self.price_usd = None,
            FilterPart::Tokens => self.tokens = None,
            FilterPart::PromptChars => self.prompt_chars = None,
            FilterPart::Search => self.search.clear(),
        }
    }
}

/// One part of a [`Filter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterPart {
    /// Category list.
    Categories,
    /// Price range.
    Price,
    /// Token range.
    Tokens,
    /// Prompt length range.
    PromptChars,
    /// Text search.
    Search,
}

/// Sortable columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortColumn {
    /// Table order.
    #[default]
    Row,
    /// Title.
    Title,
    /// Category.
    Category,
    /// Price.
    Price,
    /// Token count.
    Tokens,
    /// Prompt characters.
    Chars,
}

/// A sort order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sort {
    /// Column.
    pub column: SortColumn,
    /// Descending instead of ascending.
    pub descending: bool,
}

/// Row indices that pass `filter`, sorted by `sort`. `None` when cancelled.
pub fn filtered_sorted(table: &ItemTable, filter: &Filter, sort: Sort, cancel: &CancelToken) -> Option<Vec<u32>> {
    let codes: Vec<bool> =
        table.category_names().iter().map(|c| filter.categories.is_empty() || filter.categories.contains(c)).collect();
    let needle = filter.search.trim().to_lowercase();
    let n = table.len();
    let chunk = 1 << 15;
    let parts: Vec<Option<Vec<u32>>> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            if cancel.is_cancelled() {
                return None;
            }
            let mut out = Vec::new();
            for i in c * chunk..((c + 1) * chunk).min(n) {
                if !codes[table.category_codes()[i] as usize] {
                    continue;
                }
                if let Some((lo, hi)) = filter.price_usd
                    && !(lo <= table.prices()[i] && table.prices()[i] <= hi)
                {
                    continue;
                }
                if let Some((lo, hi)) = filter.tokens {
                    let t = u32::from(table.token_counts()[i]);
                    if t < lo || t > hi {
                        continue;
                    }
                }
                if let Some((lo, hi)) = filter.prompt_chars {
                    let t = table.prompt_chars()[i];
                    if t < lo || t > hi {
                        continue;
                    }
                }
                if !needle.is_empty() {
                    let it = table.get(i);
                    let hit = contains_ignore_case(it.title, &needle)
                        || (filter.search_prompts && contains_ignore_case(it.prompt, &needle));
                    if !hit {
                        continue;
                    }
                }
                out.push(i as u32);
            }
            Some(out)
        })
        .collect();
    let mut rows: Vec<u32> = Vec::with_capacity(parts.iter().flatten().map(Vec::len).sum());
    for p in parts {
        rows.extend(p?);
    }
    if cancel.is_cancelled() {
        return None;
    }
    sort_rows(table, &mut rows, sort);
    Some(rows)
}

fn contains_ignore_case(haystack: &str, needle_lower: &str) -> bool {
    if haystack.is_ascii() && needle_lower.is_ascii() {
        let h = haystack.as_bytes();
        let n = needle_lower.as_bytes();
        return n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    haystack.to_lowercase().contains(needle_lower)
}

fn sort_rows(table: &ItemTable, rows: &mut [u32], sort: Sort) {
    let desc = sort.descending;
    let by = |a: std::cmp::Ordering| if desc { a.reverse() } else { a };
    match sort.column {
        SortColumn::Row => {
            if desc {
                rows.reverse();
            }
        }
        SortColumn::Price => rows.par_sort_by(|&a, &b| {
            by(table.prices()[a as usize].total_cmp(&table.prices()[b as usize]).then(a.cmp(&b)))
        }),
        SortColumn::Tokens => rows.par_sort_by_key(|&r| {
            let t = table.token_counts()[r as usize];
            (if desc { u16::MAX - t } else { t }, r)
        }),
        SortColumn::Chars => rows.par_sort_by_key(|&r| {
            let t = table.prompt_chars()[r as usize];
            (if desc { u32::MAX - t } else { t }, r)
        }),
        SortColumn::Category => rows.par_sort_by(|&a, &b| {
            let ca = &table.category_names()[table.category_codes()[a as usize] as usize];
            let cb = &table.category_names()[table.category_codes()[b as usize] as usize];
            by(ca.cmp(cb)).then(a.cmp(&b))
        }),
        SortColumn::Title => {
            rows.par_sort_by(|&a, &b| by(table.get(a as usize).title.cmp(table.get(b as usize).title)).then(a.cmp(&b)))
        }
    }
}

/// Counts of items per cell of a `nx × ny` grid over price (x) and prompt characters (y): a
/// scatter of every item drawn as density. Row 0 is the lowest y.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DensityGrid {
    /// Columns.
    pub nx: usize,
    /// Rows.
    pub ny: usize,
    /// x range (USD).
    pub x_range: (f64, f64),
    /// y range (characters).
    pub y_range: (f64, f64),
    /// `counts[row * nx + col]`.
    pub counts: Vec<u32>,
    /// Largest cell count.
    pub max: u32,
}

/// Bins every item of the table (no subsampling).
pub fn density_grid(table: &ItemTable, nx: usize, ny: usize) -> DensityGrid {
    let x_range = (0.0, table.prices().iter().copied().fold(1.0f64, f64::max).ceil());
    let (ymin, ymax) = table.prompt_chars().iter().fold((u32::MAX, 0u32), |(lo, hi), &c| (lo.min(c), hi.max(c)));
    let y_range = if ymin > ymax { (0.0, 1.0) } else { (f64::from(ymin), f64::from(ymax) + 1.0) };
    let sx = nx as f64 / (x_range.1 - x_range.0).max(1e-9);
    let sy = ny as f64 / (y_range.1 - y_range.0).max(1e-9);
    let counts = table
        .prices()
        .par_chunks(1 << 16)
        .zip(table.prompt_chars().par_chunks(1 << 16))
        .map(|(ps, cs)| {
            let mut grid = vec![0u32; nx * ny];
            for (&p, &c) in ps.iter().zip(cs) {
                let x = (((p - x_range.0) * sx) as usize).min(nx - 1);
                let y = (((f64::from(c) - y_range.0) * sy) as usize).min(ny - 1);
                grid[y * nx + x] += 1;
            }
            grid
        })
        .reduce(
            || vec![0u32; nx * ny],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let max = counts.iter().copied().max().unwrap_or(0);
    DensityGrid { nx, ny, x_range, y_range, counts, max }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ItemTable {
        let mut t = ItemTable::new();
        for (i, (cat, price)) in [("A", 5.0), ("B", 50.0), ("A", 500.0), ("C", 20.0), ("B", 7.5)].iter().enumerate() {
            t.push_parts(
                &format!("Item {i} Widget"),
                cat,
                *price,
                "{}",
                &format!("prompt {i} {}", "x".repeat(i * 10)),
                150 + i as u32,
            );
        }
        t
    }

    #[test]
    fn filters_and_sorts() {
        let t = table();
        let c = CancelToken::new();
        let all = filtered_sorted(&t, &Filter::default(), Sort::default(), &c).unwrap();
        assert_eq!(all, [0, 1, 2, 3, 4]);
        let f = Filter { categories: vec!["A".into(), "B".into()], price_usd: Some((6.0, 100.0)), ..Filter::default() };
        assert_eq!(filtered_sorted(&t, &f, Sort::default(), &c).unwrap(), [1, 4]);
        let f = Filter { search: "item 3 WID".into(), ..Filter::default() };
        assert_eq!(filtered_sorted(&t, &f, Sort::default(), &c).unwrap(), [3]);
        let s = Sort { column: SortColumn::Price, descending: true };
        assert_eq!(filtered_sorted(&t, &Filter::default(), s, &c).unwrap(), [2, 1, 3, 4, 0]);
        let s = Sort { column: SortColumn::Tokens, descending: false };
        assert_eq!(
            filtered_sorted(&t, &Filter { tokens: Some((151, 153)), ..Filter::default() }, s, &c).unwrap(),
            [1, 2, 3]
        );
        c.cancel();
        assert!(filtered_sorted(&t, &Filter::default(), Sort::default(), &c).is_none());
    }

    #[test]
    fn density_counts_every_item() {
        let t = table();
        let g = density_grid(&t, 10, 4);
        assert_eq!(g.counts.iter().map(|&c| u64::from(c)).sum::<u64>(), 5);
        assert_eq!(g.x_range, (0.0, 500.0));
    }
}
