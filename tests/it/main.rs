//! Integration tests of Pricer Studio's core and CLI (one binary, one module per area).

mod cli;
mod common;
mod compare;
#[cfg(feature = "gui")]
mod compare_tab;
mod curation;
mod export;
mod export_run;
mod finetune;
mod gpu;
#[cfg(feature = "gui")]
mod gui;
mod hub;
mod import_run;
mod layers;
mod loading;
mod pricers;
mod remote;
mod runs;
mod sampling;
#[cfg(feature = "gui")]
mod snapshots;
mod tables;
mod tester;
mod tokenizer_identity;
