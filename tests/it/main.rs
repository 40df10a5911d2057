//! Integration tests of Pricer Studio's core and CLI (one binary, one module per area).

mod common;
mod curation;
