//! The run report: `report.json` and `report.md` with one row per (task, method, k, seed),
//! the mean ± std over seeds, tunable numbers per task, wall time per stage, and the plots
//! (`plots/*.svg`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mpt_core::{Artifact, BackboneRef};
use serde::Serialize;

use crate::config::Pipeline;
use crate::error::Result;
use crate::plan::{Plan, StageKind};
use crate::run::{ResultFile, read_state};

/// One evaluated (task, method, k, seed).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// Task.
    pub task: String,
    /// Method label.
    pub method: String,
    /// Few-shot k (None = full data).
    pub k: Option<usize>,
    /// Seed.
    pub seed: u64,
    /// Mean of the task's metrics.
    pub score: f64,
    /// Metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Examples evaluated.
    pub examples: usize,
    /// Tunable numbers of the evaluated artifact (for all its tasks).
    pub tunable_params: usize,
    /// Tunable numbers attributable to this task.
    pub tunable_per_task: usize,
    /// Artifact id.
    pub artifact_id: String,
    /// Score of the constant majority-class predictor on the same rows.
    pub majority: Option<f64>,
    /// Score of the backbone with no prompt (untrained head) on the same rows.
    pub no_prompt: Option<f64>,
}

/// Mean ± std over seeds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Task.
    pub task: String,
    /// Method.
    pub method: String,
    /// k.
    pub k: Option<usize>,
    /// Seeds aggregated.
    pub n: usize,
    /// Mean score.
    pub mean: f64,
    /// Sample standard deviation (0 for one seed).
    pub std: f64,
    /// Per-metric means.
    pub metrics: BTreeMap<String, f64>,
    /// Tunable numbers per task.
    pub tunable_per_task: usize,
    /// Mean majority-class score over the same seeds' rows.
    pub majority: Option<f64>,
    /// Mean no-prompt score over the same seeds' rows.
    pub no_prompt: Option<f64>,
    /// Whether `mean` exceeds `majority` by more than `std` (one seed: by anything).
    pub beats_majority: Option<bool>,
}

/// Training curve of one adapt stage.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    /// Stage.
    pub stage: String,
    /// Task(s).
    pub task: String,
    /// Method.
    pub method: String,
    /// k.
    pub k: Option<usize>,
    /// Seed.
    pub seed: u64,
    /// (step, loss).
    pub losses: Vec<(f64, f64)>,
    /// (step, dev score).
    pub evals: Vec<(f64, f64)>,
}

/// `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Pipeline name.
    pub pipeline: String,
    /// Backbone.
    pub backbone: BackboneRef,
    /// Split evaluated.
    pub split: String,
    /// Prompt length.
    pub prompt_length: usize,
    /// Per-seed rows.
    pub rows: Vec<Row>,
    /// Aggregates.
    pub summary: Vec<Summary>,
    /// Wall seconds per stage.
    pub stage_seconds: BTreeMap<String, f64>,
    /// Total wall seconds of all stages.
    pub total_seconds: f64,
    /// Plot files (relative to the run folder).
    pub plots: Vec<String>,
    /// Stages of the plan without a result yet.
    pub missing: Vec<String>,
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n.max(1.0);
    let var = if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// Aggregates rows by (task, method, k).
pub fn summarize(rows: &[Row]) -> Vec<Summary> {
    let mut groups: BTreeMap<(String, String, Option<usize>), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups.entry((r.task.clone(), r.method.clone(), r.k)).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((task, method, k), rs)| {
            let scores: Vec<f64> = rs.iter().map(|r| r.score).collect();
            let (mean, std) = mean_std(&scores);
            let mut metrics = BTreeMap::new();
            for name in rs[0].metrics.keys() {
                let v: Vec<f64> = rs.iter().filter_map(|r| r.metrics.get(name).copied()).collect();
                metrics.insert(name.clone(), mean_std(&v).0);
            }
            let baseline = |f: fn(&Row) -> Option<f64>| -> Option<f64> {
                let v: Option<Vec<f64>> = rs.iter().map(|r| f(r)).collect();
                v.map(|v| mean_std(&v).0)
            };
            let majority = baseline(|r| r.majority);
            Summary {
                task,
                method,
                k,
                n: rs.len(),
                mean,
                std,
                metrics,
                tunable_per_task: rs[0].tunable_per_task,
                majority,
                no_prompt: baseline(|r| r.no_prompt),
                beats_majority: majority.map(|m| mean - m > std),
            }
        })
        .collect()
}

fn k_label(k: Option<usize>) -> String {
    k.map_or("full".to_string(), |k| format!("k={k}"))
}

/// Collects rows, curves and times, and writes `report.json`, `report.md` and the plots.
/// Returns the path of `report.md`.
pub fn write(pipeline: &Pipeline, plan: &Plan, backbone: &BackboneRef) -> Result<PathBuf> {
    let run_dir = &pipeline.run_dir;
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    let mut curves = Vec::new();
    for (i, stage) in plan.stages.iter().enumerate() {
        let Some(cell) = &stage.cell else { continue };
        match &stage.kind {
            StageKind::Eval(_) => {
                let path = plan.result_path(run_dir, i);
                let Some(file) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<ResultFile>(&b).ok())
                else {
                    missing.push(stage.name.clone());
                    continue;
                };
                let r = file.result;
                let artifact_dir = plan.artifact_dir(run_dir, stage.deps[0]);
                let tasks = Artifact::read_meta(&artifact_dir).map(|m| m.tasks.len()).unwrap_or(1).max(1);
                let per_task = per_task_tunable(&artifact_dir, r.tunable_params, tasks);
                rows.push(Row {
                    task: r.task,
                    method: cell.method.clone(),
                    k: cell.k,
                    seed: cell.seed,
                    score: r.score,
                    metrics: r.metrics,
                    examples: r.examples,
                    tunable_params: r.tunable_params,
                    tunable_per_task: per_task,
                    artifact_id: r.artifact_id,
                    majority: r.baselines.as_ref().map(|b| b.majority),
                    no_prompt: r.baselines.as_ref().map(|b| b.no_prompt),
                });
            }
            StageKind::Adapt(config) => {
                if let Ok(meta) = Artifact::read_meta(&plan.artifact_dir(run_dir, i)) {
                    let pairs = |key: &str| -> Vec<(f64, f64)> {
                        meta.metrics["curve"][key]
                            .as_array()
                            .map(|a| {
                                a.iter().filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?))).collect()
                            })
                            .unwrap_or_default()
                    };
                    curves.push(Curve {
                        stage: stage.name.clone(),
                        task: config.targets.join("+"),
                        method: cell.method.clone(),
                        k: cell.k,
                        seed: cell.seed,
                        losses: pairs("losses"),
                        evals: pairs("evals"),
                    });
                }
            }
            _ => {}
        }
    }
    let summary = summarize(&rows);
    let state = read_state(run_dir);
    let stage_seconds: BTreeMap<String, f64> = plan
        .stages
        .iter()
        .filter_map(|s| state.get(&s.name).and_then(|r| r.seconds).map(|t| (s.name.clone(), t)))
        .collect();
    let total_seconds = stage_seconds.values().sum();
    let plots = crate::plots::draw(run_dir, &summary, &curves)?;
    let report = Report {
        pipeline: pipeline.file.name.clone(),
        backbone: backbone.clone(),
        split: pipeline.file.eval.split.to_string(),
        prompt_length: pipeline.file.prompt.length,
        rows,
        summary,
        stage_seconds,
        total_seconds,
        plots,
        missing,
    };
    let json_path = run_dir.join("report.json");
    mpt_models::io::write_atomic(&json_path, &serde_json::to_vec_pretty(&report).expect("report serialises"))?;
    let md_path = run_dir.join("report.md");
    mpt_models::io::write_atomic(&md_path, markdown(&report).as_bytes())?;
    Ok(md_path)
}

fn per_task_tunable(artifact_dir: &Path, total: usize, tasks: usize) -> usize {
    // Multi-target: (l·d) shared + r·(l+d) per task; attribute the shared part evenly.
    match Artifact::read_meta(artifact_dir) {
        Ok(m) if m.layout == mpt_core::Layout::Multitask && tasks > 1 => {
            let per = m.rank * (m.prompt_length + m.dim);
            per + (m.prompt_length * m.dim) / tasks
        }
        _ => total / tasks,
    }
}

/// The markdown report.
pub fn markdown(r: &Report) -> String {
    let mut md = format!(
        "# {} — results\n\nBackbone `{}` ({}), prompt length {}, {} split. Scores are the mean of each task's metrics, in %; \
         `mean ± std (n seeds)`.\n\n",
        r.pipeline, r.backbone.name, r.backbone.arch, r.prompt_length, r.split
    );
    md.push_str(
        "`majority` always predicts the train split's most frequent label (a generation task: its most frequent \
         reference text) and `no prompt` is the frozen backbone with the untrained head, both scored on the same rows with the same metrics. A score marked † does not \
         beat the majority class by more than its seed spread (std; with one seed, by anything).\n\n",
    );
    let mut ks: Vec<Option<usize>> = r.summary.iter().map(|s| s.k).collect();
    ks.sort();
    ks.dedup();
    let mut methods: Vec<String> = Vec::new();
    for s in &r.summary {
        if !methods.contains(&s.method) {
            methods.push(s.method.clone());
        }
    }
    for k in &ks {
        let mut tasks: Vec<String> = r.summary.iter().filter(|s| s.k == *k).map(|s| s.task.clone()).collect();
        tasks.sort();
        tasks.dedup();
        let cols: Vec<&String> =
            methods.iter().filter(|m| r.summary.iter().any(|s| s.k == *k && &s.method == *m)).collect();
        md.push_str(&format!("## {}\n\n| task | majority | no prompt |", k_label(*k)));
        for m in &cols {
            md.push_str(&format!(" {m} |"));
        }
        md.push_str("\n|---|---|---|");
        md.push_str(&"---|".repeat(cols.len()));
        md.push('\n');
        let mut sums: Vec<(f64, usize)> = vec![(0.0, 0); cols.len()];
        let pct = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{:.1}", v * 100.0));
        for t in &tasks {
            let first = r.summary.iter().find(|s| s.k == *k && &s.task == t);
            md.push_str(&format!(
                "| {t} | {} | {} |",
                pct(first.and_then(|s| s.majority)),
                pct(first.and_then(|s| s.no_prompt))
            ));
            for (j, m) in cols.iter().enumerate() {
                match r.summary.iter().find(|s| s.k == *k && &s.task == t && &s.method == *m) {
                    Some(s) => {
                        let mark = if s.beats_majority == Some(false) { " †" } else { "" };
                        md.push_str(&format!(" {:.1} ± {:.1} ({}){mark} |", s.mean * 100.0, s.std * 100.0, s.n));
                        sums[j].0 += s.mean;
                        sums[j].1 += 1;
                    }
                    None => md.push_str(" – |"),
                }
            }
            md.push('\n');
        }
        if tasks.len() > 1 {
            md.push_str("| **average** | | |");
            for (sum, n) in &sums {
                if *n == tasks.len() {
                    md.push_str(&format!(" **{:.1}** |", sum / *n as f64 * 100.0));
                } else {
                    md.push_str(" – |");
                }
            }
            md.push('\n');
        }
        md.push('\n');
    }
    md.push_str("## Tunable numbers per task\n\n| method | tunable |\n|---|---|\n");
    for m in &methods {
        if let Some(s) = r.summary.iter().find(|s| &s.method == m) {
            md.push_str(&format!("| {m} | {} |\n", s.tunable_per_task));
        }
    }
    md.push_str(
        "\n## Per seed\n\n| task | method | k | seed | score | majority | no prompt | metrics | examples |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let pct = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{:.1}", v * 100.0));
    for row in &r.rows {
        let metrics: Vec<String> = row.metrics.iter().map(|(k, v)| format!("{k} {:.1}", v * 100.0)).collect();
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {} |\n",
            row.task,
            row.method,
            k_label(row.k),
            row.seed,
            row.score * 100.0,
            pct(row.majority),
            pct(row.no_prompt),
            metrics.join(", "),
            row.examples
        ));
    }
    md.push_str(&format!(
        "\n## Wall time per stage\n\nTotal {:.1} min over {} stages.\n\n| stage | seconds |\n|---|---|\n",
        r.total_seconds / 60.0,
        r.stage_seconds.len()
    ));
    for (stage, s) in &r.stage_seconds {
        md.push_str(&format!("| {stage} | {s:.1} |\n"));
    }
    if !r.plots.is_empty() {
        md.push_str("\n## Plots\n\n");
        for p in &r.plots {
            md.push_str(&format!("![{p}]({p})\n\n"));
        }
    }
    if !r.missing.is_empty() {
        md.push_str(&format!("\n{} evaluation(s) of the plan have no result yet.\n", r.missing.len()));
    }
    md
}
