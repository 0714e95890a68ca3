//! Analysis and presentation of results: thresholds, comparisons, HTML and Markdown reports.

pub mod thresholds;
