//! What the criterion benches share.

use std::path::Path;

/// Mean time per iteration, in ns, from criterion's saved estimates.
pub fn mean_ns(group: &str, bench: &str) -> Option<f64> {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("../criterion")
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["mean"]["point_estimate"].as_f64()
}
