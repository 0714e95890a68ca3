//! Report generation for a Trial-1-sized campaign (42 user steps of 150 s, two tasks, per-second
//! timelines, infra samples, cloud series): the goal is under 2 s. `cargo bench --bench report`.

#[path = "../tests/common/crafted.rs"]
mod crafted;

use std::time::Instant;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    crafted::Crafted {
        users: (0..42).map(|i| 2 + 2 * i).collect(),
        seconds: 150,
        provision: true,
        scaling: true,
        ..Default::default()
    }
    .write(dir.path());
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        trialrunner::report::build(dir.path()).unwrap();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let size = |f: &str| std::fs::metadata(dir.path().join(f)).unwrap().len() / 1024;
    println!(
        "report for 42 runs × 150 s: median {:.3} s, best {:.3} s, worst {:.3} s; report.html {} KiB, report.md {} KiB",
        times[2],
        times[0],
        times[4],
        size("report.html"),
        size("report.md")
    );
    println!(
        "goal: < 2 s — {}",
        if times[2] < 2.0 { "met" } else { "NOT met" }
    );
}
