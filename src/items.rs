//! The curated item table: a columnar store (one string buffer per text column, plain vectors for
//! numbers, categories as small integer codes) sized for millions of items, with the per-item
//! view the rest of the program uses.

use crate::text::py_len;
use serde::{Deserialize, Serialize};

/// The question that opens every prompt.
pub const QUESTION: &str = "How much does this cost to the nearest dollar?";
/// The text right before the price in every prompt.
pub const PREFIX: &str = "Price is $";

/// Price slot of a price: `round(price / width)` with Python's half-even rounding.
pub fn price_slot(price_usd: f64, slot_width_usd: f64) -> u32 {
    let s = (price_usd / slot_width_usd).round_ties_even();
    if s.is_finite() && s > 0.0 { s as u32 } else { 0 }
}

/// One curated item, owned (for building tables and writing files).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CuratedItem {
    /// The raw product title.
    pub title: String,
    /// Dataset/category name, e.g. `Automotive`.
    pub category: String,
    /// Price in USD.
    pub price: f64,
    /// The raw details as a JSON string (Python `json.dumps` form).
    pub details: String,
    /// The training prompt, ending `Price is $<dollars>.00`.
    pub prompt: String,
    /// Tokens in the prompt (no special tokens).
    pub token_count: u32,
}

/// The prompt cut right after the first `Price is $` (what a model sees at test time).
pub fn test_prompt(prompt: &str) -> &str {
    match prompt.find(PREFIX) {
        Some(i) => &prompt[..i + PREFIX.len()],
        None => prompt,
    }
}

/// A column of strings stored back to back in one buffer.
#[derive(Clone, Debug, Default)]
pub struct StrColumn {
    data: String,
    ends: Vec<u64>,
}

impl StrColumn {
    /// Room for `n` more strings of `bytes` bytes in all.
    pub fn reserve(&mut self, n: usize, bytes: usize) {
        self.data.reserve(bytes);
        self.ends.reserve(n);
    }
    /// Appends one string.
    pub fn push(&mut self, s: &str) {
        self.data.push_str(s);
        self.ends.push(self.data.len() as u64);
    }
    /// The `i`-th string.
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }
    /// Number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    /// Whether the column is empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    /// Bytes of text held.
    pub fn text_bytes(&self) -> usize {
        self.data.len()
    }
    /// Bytes of memory reserved (text and offsets).
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity() + self.ends.capacity() * 8
    }
    fn shrink_to_fit(&mut self) {
        self.data.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
    /// Appends every string of `other` (one copy of its text, its ends shifted).
    fn append(&mut self, other: &StrColumn) {
        let base = self.data.len() as u64;
        self.data.push_str(&other.data);
        self.ends.extend(other.ends.iter().map(|e| e + base));
    }
}

/// A column of byte strings stored back to back in one buffer.
#[derive(Clone, Debug, Default)]
pub struct BytesColumn {
    data: Vec<u8>,
    ends: Vec<u64>,
}

impl BytesColumn {
    /// Room for `n` more values of `bytes` bytes in all.
    pub fn reserve(&mut self, n: usize, bytes: usize) {
        self.data.reserve(bytes);
        self.ends.reserve(n);
    }
    /// Appends one value.
    pub fn push(&mut self, b: &[u8]) {
        self.data.extend_from_slice(b);
        self.ends.push(self.data.len() as u64);
    }
    /// The `i`-th value.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }
    /// The `i`-th value, or `None` past the end.
    pub fn try_get(&self, i: usize) -> Option<&[u8]> {
        (i < self.ends.len()).then(|| self.get(i))
    }
    /// Bytes of memory reserved (data and offsets).
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity() + self.ends.capacity() * 8
    }
}

/// Curated items in columns. Row `i` of every column belongs to item `i`. The details JSON is
/// held as text like the title and the prompt: compressing each item's details on its own (LZ4)
/// kept 83% of their bytes on real items and cost more than half of the time of reading a
/// curated Parquet file, and a 2.8M-item table stays under 2 bytes per byte of prompt text
/// without it.
#[derive(Clone, Debug, Default)]
pub struct ItemTable {
    titles: StrColumn,
    details: StrColumn,
    prompts: StrColumn,
    category_codes: Vec<u16>,
    category_names: Vec<String>,
    prices: Vec<f64>,
    price_cents: Vec<u32>,
    token_counts: Vec<u16>,
    prompt_chars: Vec<u32>,
    slots: Vec<u16>,
}

/// A borrowed view of one item of an [`ItemTable`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ItemRef<'a> {
    /// Row index in the table.
    pub index: usize,
    /// Raw title.
    pub title: &'a str,
    /// Category name.
    pub category: &'a str,
    /// Price in USD.
    pub price: f64,
    /// Raw details JSON string (see [`ItemRef::details`]).
    details: &'a str,
    /// Training prompt.
    pub prompt: &'a str,
    /// Tokens in the prompt.
    pub token_count: u32,
}

impl<'a> ItemRef<'a> {
    /// The raw details JSON string.
    pub fn details(&self) -> &'a str {
        self.details
    }
    /// The test prompt (cut after `Price is $`).
    pub fn test_prompt(&self) -> &str {
        test_prompt(self.prompt)
    }
    /// An owned copy.
    pub fn to_owned_item(&self) -> CuratedItem {
        CuratedItem {
            title: self.title.to_owned(),
            category: self.category.to_owned(),
            price: self.price,
            details: self.details.to_owned(),
            prompt: self.prompt.to_owned(),
            token_count: self.token_count,
        }
    }
}

impl ItemTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    /// Whether the table holds no item.
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// Appends one item.
    pub fn push(&mut self, item: &CuratedItem) {
        self.push_parts(&item.title, &item.category, item.price, &item.details, &item.prompt, item.token_count);
    }

    /// Appends one item from its parts.
    pub fn push_parts(
        &mut self,
        title: &str,
        category: &str,
        price: f64,
        details: &str,
        prompt: &str,
        token_count: u32,
    ) {
        let code = self.category_code(category);
        self.titles.push(title);
        self.details.push(details);
        self.prompts.push(prompt);
        self.category_codes.push(code);
        self.prices.push(price);
        self.price_cents.push((price * 100.0).round().clamp(0.0, f64::from(u32::MAX)) as u32);
        self.token_counts.push(token_count.min(u32::from(u16::MAX)) as u16);
        self.prompt_chars.push(py_len(prompt) as u32);
        self.slots.push(price_slot(price, 1.0).min(u32::from(u16::MAX)) as u16);
    }

    /// Room for `n` more items whose titles, raw details and prompts hold about these many bytes
    /// (growing the columns item by item copies them again and again; reading a file knows the
    /// sizes up front).
    pub fn reserve(&mut self, n: usize, title_bytes: usize, details_bytes: usize, prompt_bytes: usize) {
        self.titles.reserve(n, title_bytes);
        self.details.reserve(n, details_bytes);
        self.prompts.reserve(n, prompt_bytes);
        self.category_codes.reserve(n);
        self.prices.reserve(n);
        self.price_cents.reserve(n);
        self.token_counts.reserve(n);
        self.prompt_chars.reserve(n);
        self.slots.reserve(n);
    }

    /// Appends every item of `other` (each text column copied in one piece).
    pub fn extend_from(&mut self, other: &ItemTable) {
        let codes: Vec<u16> = other.category_names.iter().map(|name| self.category_code(name)).collect();
        self.titles.append(&other.titles);
        self.details.append(&other.details);
        self.prompts.append(&other.prompts);
        self.category_codes.extend(other.category_codes.iter().map(|&c| codes[c as usize]));
        self.prices.extend_from_slice(&other.prices);
        self.price_cents.extend_from_slice(&other.price_cents);
        self.token_counts.extend_from_slice(&other.token_counts);
        self.prompt_chars.extend_from_slice(&other.prompt_chars);
        self.slots.extend_from_slice(&other.slots);
    }

    fn category_code(&mut self, name: &str) -> u16 {
        if let Some(i) = self.category_names.iter().position(|c| c == name) {
            return i as u16;
        }
        self.category_names.push(name.to_owned());
        (self.category_names.len() - 1) as u16
    }

    /// The `i`-th item.
    pub fn get(&self, i: usize) -> ItemRef<'_> {
        ItemRef {
            index: i,
            title: self.titles.get(i),
            category: &self.category_names[self.category_codes[i] as usize],
            price: self.prices[i],
            details: self.details.get(i),
            prompt: self.prompts.get(i),
            token_count: u32::from(self.token_counts[i]),
        }
    }

    /// Iterates over all items.
    pub fn iter(&self) -> impl Iterator<Item = ItemRef<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Prices in USD, one per item.
    pub fn prices(&self) -> &[f64] {
        &self.prices
    }
    /// Prices in whole cents, one per item (what fast binning uses).
    pub fn price_cents(&self) -> &[u32] {
        &self.price_cents
    }
    /// Prompt token counts, one per item.
    pub fn token_counts(&self) -> &[u16] {
        &self.token_counts
    }
    /// Prompt lengths in characters, one per item.
    pub fn prompt_chars(&self) -> &[u32] {
        &self.prompt_chars
    }
    /// Category code of each item (index into [`Self::category_names`]).
    pub fn category_codes(&self) -> &[u16] {
        &self.category_codes
    }
    /// Category names in code order.
    pub fn category_names(&self) -> &[String] {
        &self.category_names
    }
    /// Price slot of each item (`round(price)`, half-even).
    pub fn slots(&self) -> &[u16] {
        &self.slots
    }

    /// A new table with the rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ItemTable {
        let mut out = ItemTable::new();
        for &i in indices {
            let it = self.get(i);
            out.push_parts(it.title, it.category, it.price, it.details(), it.prompt, it.token_count);
        }
        out.shrink_to_fit();
        out
    }

    /// A table of `n` items cycling through `base`, each cycle with its prices scaled by its own
    /// factor in 0.9..1.1 (clamped to the curated range) so slots fill like a large catalogue: benchmarks
    /// of million-item tables built from a few thousand real or demo items.
    pub fn repeated(base: &ItemTable, n: usize) -> ItemTable {
        let mut out = ItemTable::new();
        if base.is_empty() {
            return out;
        }
        // Exact room: `n` items are `n / len` whole cycles and the first `n % len` items.
        let (cycles, rest) = (n / base.len(), n % base.len());
        let bytes = |col: &StrColumn| {
            let rest_bytes = if rest == 0 { 0 } else { col.ends[rest - 1] as usize };
            cycles * col.text_bytes() + rest_bytes
        };
        out.reserve(n, bytes(&base.titles), bytes(&base.details), bytes(&base.prompts));
        for k in 0..n {
            let it = base.get(k % base.len());
            let jitter = 1.0 + ((k / base.len()) as f64 * 0.013) % 0.2 - 0.1;
            let price = (it.price * jitter).clamp(0.5, 999.49);
            out.push_parts(it.title, it.category, price, it.details(), it.prompt, it.token_count);
        }
        out.shrink_to_fit();
        out
    }

    /// Releases spare capacity (call after building).
    pub fn shrink_to_fit(&mut self) {
        self.titles.shrink_to_fit();
        self.details.shrink_to_fit();
        self.prompts.shrink_to_fit();
        self.category_codes.shrink_to_fit();
        self.prices.shrink_to_fit();
        self.price_cents.shrink_to_fit();
        self.token_counts.shrink_to_fit();
        self.prompt_chars.shrink_to_fit();
        self.slots.shrink_to_fit();
    }

    /// Bytes of prompt text held.
    pub fn prompt_text_bytes(&self) -> usize {
        self.prompts.text_bytes()
    }

    /// Bytes of heap memory the table holds (all columns).
    pub fn heap_bytes(&self) -> usize {
        self.titles.heap_bytes()
            + self.details.heap_bytes()
            + self.prompts.heap_bytes()
            + self.category_codes.capacity() * 2
            + self.prices.capacity() * 8
            + self.price_cents.capacity() * 4
            + self.token_counts.capacity() * 2
            + self.prompt_chars.capacity() * 4
            + self.slots.capacity() * 2
            + self.category_names.iter().map(|s| s.capacity() + 24).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_and_repeat() {
        let mut t = ItemTable::new();
        t.push_parts("a", "X", 10.0, r#"{"Brand": "A"}"#, "p a\n\nPrice is $10.00", 170);
        t.push_parts("b", "Y", 226.5, "", "p b\n\nPrice is $226.00", 171);
        assert_eq!(t.get(0).details(), r#"{"Brand": "A"}"#);
        assert_eq!(t.get(1).details(), "");
        assert_eq!(t.slots(), [10, 226]);
        assert_eq!(t.price_cents(), [1000, 22650]);
        assert_eq!(t.get(1).test_prompt(), "p b\n\nPrice is $");
        let r = ItemTable::repeated(&t, 5);
        assert_eq!(r.len(), 5);
        assert_eq!(r.iter().map(|i| i.title).collect::<Vec<_>>(), ["a", "b", "a", "b", "a"]);
        assert_eq!(r.get(2).details(), r#"{"Brand": "A"}"#);
        assert!(r.prices().iter().all(|&p| (0.5..=999.49).contains(&p)));
        assert!((r.prices()[0] - 9.0).abs() < 1e-9, "{}", r.prices()[0]);
        assert_ne!(r.prices()[0], r.prices()[2], "each cycle has its own price factor");
    }
}
