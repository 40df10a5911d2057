//! Pricer Studio's domain core: loading Amazon product metadata, curating it into prompt/price
//! items exactly as the reference pipeline, statistics, balancing and splitting, exports, the
//! Tester, Hub downloads and a synthetic demo dataset. No GUI dependency: the `pricer` CLI (and
//! the app) drive this crate.

#[cfg(feature = "gui")]
pub mod app;
pub mod atomic;
pub mod curate;
pub mod dataset;
pub mod demo;
pub mod error;
pub mod evaluation;
pub mod export;
pub mod finetune;
pub mod hub;
pub mod items;
pub mod items_io;
pub mod jobs;
pub mod load;
pub mod mapping;
pub mod pricers;
pub mod pyjson;
pub mod remote;
pub mod sampling;
pub mod stats;
pub mod table;
pub mod tester;
pub mod text;
pub mod tokenizer;
mod unicode_tables;
pub mod view;

pub use error::{Error, Result};
