//! SVG pictures of a run (plotters): training-loss curves per target task and a
//! method-comparison bar chart per k.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::error::{PipelineError, Result};
use crate::report::{Curve, Summary};

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn plot_err(path: &Path, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Io { path: path.to_path_buf(), source: std::io::Error::other(e.to_string()) }
}

fn k_label(k: Option<usize>) -> String {
    k.map_or("full".into(), |k| format!("k{k}"))
}

/// Draws the plots into `run_dir/plots` and returns their paths relative to `run_dir`.
pub fn draw(run_dir: &Path, summary: &[Summary], curves: &[Curve]) -> Result<Vec<String>> {
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir).map_err(|source| PipelineError::Io { path: dir.clone(), source })?;
    let mut files = Vec::new();

    // Loss curves: per task, the first seed of the largest k, one line per method.
    let mut by_task: BTreeMap<&str, Vec<&Curve>> = BTreeMap::new();
    for c in curves.iter().filter(|c| !c.losses.is_empty()) {
        by_task.entry(c.task.as_str()).or_default().push(c);
    }
    for (task, cs) in by_task {
        let k = cs.iter().map(|c| c.k).max().flatten();
        let seed = cs.iter().filter(|c| c.k == k).map(|c| c.seed).min().unwrap_or(0);
        let chosen: Vec<&&Curve> = cs.iter().filter(|c| c.k == k && c.seed == seed).collect();
        if chosen.is_empty() {
            continue;
        }
        let name = format!("plots/curves-{}-{}.svg", task.replace('+', "-"), k_label(k));
        let path = run_dir.join(&name);
        let max_x = chosen.iter().flat_map(|c| c.losses.iter().map(|p| p.0)).fold(1.0, f64::max);
        let max_y = chosen.iter().flat_map(|c| c.losses.iter().map(|p| p.1)).fold(0.0, f64::max) * 1.05 + 1e-6;
        let root = SVGBackend::new(&path, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(&path, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("training loss — {task} ({}, seed {seed})", k_label(k)), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..max_x, 0f64..max_y)
            .map_err(|e| plot_err(&path, e))?;
        chart.configure_mesh().x_desc("step").y_desc("loss").draw().map_err(|e| plot_err(&path, e))?;
        for (i, c) in chosen.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(c.losses.iter().copied(), color.stroke_width(2)))
                .map_err(|e| plot_err(&path, e))?
                .label(c.method.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(&path, e))?;
        root.present().map_err(|e| plot_err(&path, e))?;
        files.push(name);
    }

    // Method comparison: per k, tasks on x, one bar per method (mean, with ± std whiskers).
    let mut ks: Vec<Option<usize>> = summary.iter().map(|s| s.k).collect();
    ks.sort();
    ks.dedup();
    for k in ks {
        let rows: Vec<&Summary> = summary.iter().filter(|s| s.k == k).collect();
        let mut tasks: Vec<&str> = rows.iter().map(|s| s.task.as_str()).collect();
        tasks.sort();
        tasks.dedup();
        let mut methods: Vec<&str> = Vec::new();
        for s in &rows {
            if !methods.contains(&s.method.as_str()) {
                methods.push(&s.method);
            }
        }
        let name = format!("plots/methods-{}.svg", k_label(k));
        let path = run_dir.join(&name);
        let width = (160 + tasks.len() * (methods.len() * 28 + 40)).max(520) as u32;
        let root = SVGBackend::new(&path, (width, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(&path, e))?;
        let n = tasks.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("score by method ({})", k_label(k)), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..n, 0f64..100f64)
            .map_err(|e| plot_err(&path, e))?;
        let labels: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(tasks.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = (x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_desc("score (%)")
            .draw()
            .map_err(|e| plot_err(&path, e))?;
        let slot = 0.8 / methods.len().max(1) as f64;
        for (j, m) in methods.iter().enumerate() {
            let color = COLORS[j % COLORS.len()];
            let bars: Vec<(f64, f64, f64)> = tasks
                .iter()
                .enumerate()
                .filter_map(|(ti, t)| {
                    rows.iter()
                        .find(|s| s.task == *t && s.method == *m)
                        .map(|s| (ti as f64 + 0.1 + slot * j as f64, s.mean * 100.0, s.std * 100.0))
                })
                .collect();
            chart
                .draw_series(
                    bars.iter().map(|&(x, y, _)| Rectangle::new([(x, 0.0), (x + slot * 0.9, y)], color.filled())),
                )
                .map_err(|e| plot_err(&path, e))?
                .label(m.to_string())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            chart
                .draw_series(bars.iter().filter(|b| b.2 > 0.0).map(|&(x, y, s)| {
                    let cx = x + slot * 0.45;
                    PathElement::new(vec![(cx, (y - s).max(0.0)), (cx, (y + s).min(100.0))], BLACK)
                }))
                .map_err(|e| plot_err(&path, e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(&path, e))?;
        root.present().map_err(|e| plot_err(&path, e))?;
        files.push(name);
    }
    Ok(files)
}
