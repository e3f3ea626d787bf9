//! Plain end-of-command summaries.

use mpt_core::Artifact;

/// Prints what an artifact is and its recorded dev/test scores.
pub fn print_artifact(a: &Artifact) {
    let m = &a.meta;
    println!("{} artifact {}", m.kind, a.dir.display());
    println!("  id:       {}", m.id);
    println!("  tasks:    {}", m.tasks.join(", "));
    println!("  prompt:   l={} d={} rank={} ({} tunable numbers)", m.prompt_length, m.dim, m.rank, m.tunable_params);
    if !m.parents.is_empty() {
        println!("  parents:  {}", m.parents.join(", "));
    }
    for split in ["dev", "test"] {
        if let Some(tasks) = m.metrics.get(split).and_then(|v| v.as_object()) {
            for (task, scores) in tasks {
                let scores: Vec<String> = scores
                    .as_object()
                    .map(|s| s.iter().map(|(k, v)| format!("{k} {:.4}", v.as_f64().unwrap_or(f64::NAN))).collect())
                    .unwrap_or_default();
                println!("  {split:<5} {task}: {}", scores.join(", "));
            }
        }
    }
}
