//! The stage graph of a pipeline: teachers, distillations (MPT and its ablations),
//! adaptations (per target × k × seed × method) and evaluations, in dependency order, each
//! with the exact config its artifact will record.

use std::path::PathBuf;

use mpt_adapt::{AdaptConfig, Method};
use mpt_core::init::{FactorInit, TargetInit};
use mpt_distill::{DistillConfig, SharedInit, SharedStart};
use mpt_eval::EvalConfig;
use mpt_teacher::TeacherConfig;
use mpt_train::Selection;

use crate::config::Pipeline;

/// What a stage does.
#[derive(Debug, Clone)]
pub enum StageKind {
    /// Train a teacher.
    Teacher(TeacherConfig),
    /// A teacher taken from a source-prompt library folder (`sources.from`), not trained.
    Provided(PathBuf),
    /// Distil (deps: the teachers, in `config.tasks` order).
    Distill(DistillConfig),
    /// Adapt (dep: the source artifact, if any).
    Adapt(AdaptConfig),
    /// Evaluate (dep: the artifact).
    Eval(EvalConfig),
}

/// Labels that place a stage in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Method label, e.g. `mpt`, `vanilla`, `spot-mnli`, `teacher`.
    pub method: String,
    /// Few-shot k (None = full data).
    pub k: Option<usize>,
    /// Seed.
    pub seed: u64,
}

/// One node of the graph.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Unique name, also its path under the run folder, e.g. `adapt/mpt/rte/k16-s0`.
    pub name: String,
    /// What it does.
    pub kind: StageKind,
    /// Indices of the stages it needs (earlier in the plan).
    pub deps: Vec<usize>,
    /// Report placement (adapt and eval stages).
    pub cell: Option<Cell>,
}

impl Stage {
    /// `teacher`, `distill`, `adapt` or `eval`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            StageKind::Teacher(_) | StageKind::Provided(_) => "teacher",
            StageKind::Distill(_) => "distill",
            StageKind::Adapt(_) => "adapt",
            StageKind::Eval(_) => "eval",
        }
    }
}

/// The ordered stages.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Stages, dependencies first.
    pub stages: Vec<Stage>,
}

impl Plan {
    /// Index of the stage named `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// Where a training stage's artifact lives (a provided teacher's: its library folder).
    pub fn artifact_dir(&self, run_dir: &std::path::Path, i: usize) -> PathBuf {
        match &self.stages[i].kind {
            StageKind::Provided(dir) => dir.clone(),
            _ => run_dir.join("artifacts").join(&self.stages[i].name),
        }
    }

    /// Where an eval stage's result lives.
    pub fn result_path(&self, run_dir: &std::path::Path, i: usize) -> PathBuf {
        run_dir.join("results").join(format!("{}.json", self.stages[i].name))
    }
}

fn canonical(task: &str) -> String {
    mpt_data::lookup(task).map(|t| t.name.to_string()).unwrap_or_else(|_| task.to_string())
}

/// Builds the plan of a validated pipeline.
pub fn build(p: &Pipeline) -> Plan {
    let f = &p.file;
    let mut stages: Vec<Stage> = Vec::new();
    let sources: Vec<String> = f.sources.tasks.iter().map(|t| canonical(t)).collect();
    let targets: Vec<String> = f.targets.tasks.iter().map(|t| canonical(t)).collect();
    let head = f.head;
    let kappa = p.kappa();

    let needs_teachers = f.distill.lambda > 0.0 || f.distill.shared_init == SharedStart::TeacherMean || !f.methods.spot.is_empty() || f.eval.sources;
    let mut teacher_ids = Vec::new();
    if needs_teachers {
        for task in &sources {
            teacher_ids.push(stages.len());
            let kind = match &f.sources.from {
                Some(lib) => StageKind::Provided(lib.join(task)),
                None => StageKind::Teacher(TeacherConfig {
                    task: task.clone(),
                    prompt_length: f.prompt.length,
                    init: p.init.clone(),
                    train: p.teacher_train.clone(),
                    head,
                    data: p.teacher_data.clone(),
                }),
            };
            stages.push(Stage {
                name: format!("teacher/{task}"),
                kind,
                deps: Vec::new(),
                cell: None,
            });
        }
    }

    let distill = |lambda: f64, decomposition: bool, shared_init: SharedInit| DistillConfig {
        tasks: sources.clone(),
        prompt_length: if matches!(shared_init, SharedInit::Fresh { .. }) && lambda == 0.0 { Some(f.prompt.length) } else { None },
        rank: f.prompt.rank,
        lambda,
        temperature: f.distill.temperature,
        hidden_loss: f.distill.hidden_loss,
        kappa,
        decomposition,
        shared_init,
        factor_init: FactorInit::Ones,
        train: p.distill_train.clone(),
        head,
        data: p.distill_data.clone(),
    };
    let main_init = f.distill.shared_init.with_init(&p.init);
    let teacher_deps = |config: &DistillConfig| if config.needs_teachers() { teacher_ids.clone() } else { Vec::new() };
    let mut distills: Vec<(String, usize)> = Vec::new();
    let mut push_distill = |stages: &mut Vec<Stage>, name: &str, config: DistillConfig| {
        let deps = teacher_deps(&config);
        distills.push((name.to_string(), stages.len()));
        stages.push(Stage {
            name: format!("distill/{name}"),
            kind: StageKind::Distill(config),
            deps,
            cell: None,
        });
    };
    push_distill(&mut stages, "mpt", distill(f.distill.lambda, true, main_init.clone()));
    if f.methods.no_distillation {
        // Only λ differs from the MPT distillation: same P* start, same factors, same data.
        push_distill(&mut stages, "no-distillation", distill(0.0, true, main_init.clone()));
    }
    if f.methods.no_decomposition {
        push_distill(&mut stages, "no-decomposition", distill(f.distill.lambda, false, main_init));
    }
    let distill_index = |name: &str| distills.iter().find(|(n, _)| n == name).map(|(_, i)| *i).expect("pushed above");

    // (method label, method, source stage)
    let mut methods: Vec<(String, Method, Option<usize>)> = Vec::new();
    let inits = p.mpt_inits().expect("validated by Pipeline::parse");
    for (text, init) in f.methods.mpt.iter().zip(inits) {
        let label = if f.methods.mpt.len() == 1 && init == TargetInit::Average {
            "mpt".to_string()
        } else {
            format!("mpt-{}", text.replace(':', "-"))
        };
        methods.push((label, Method::Mpt { init, fresh: FactorInit::Ones }, Some(distill_index("mpt"))));
    }
    if f.methods.vanilla {
        methods.push(("vanilla".into(), Method::Vanilla { init: p.init.clone() }, None));
    }
    for src in &f.methods.spot {
        let src = canonical(src);
        let i = sources.iter().position(|s| *s == src).expect("validated");
        methods.push((format!("spot-{src}"), Method::Spot, Some(teacher_ids[i])));
    }
    if f.methods.no_distillation {
        methods.push((
            "mpt-no-distillation".into(),
            Method::Mpt { init: TargetInit::Average, fresh: FactorInit::Ones },
            Some(distill_index("no-distillation")),
        ));
    }
    if f.methods.no_decomposition {
        methods.push((
            "mpt-no-decomposition".into(),
            Method::Mpt { init: TargetInit::Average, fresh: FactorInit::Ones },
            Some(distill_index("no-decomposition")),
        ));
    }

    let ks_for = |group: &[String]| -> Vec<Option<usize>> {
        // A multi-target group uses the k values every member supports.
        let mut lists = group.iter().map(|t| p.few_shot_for(t));
        let first = lists.next().unwrap_or_default();
        let common: Vec<usize> = first.into_iter().filter(|k| group.iter().all(|t| p.few_shot_for(t).contains(k))).collect();
        if common.is_empty() { vec![None] } else { common.into_iter().map(Some).collect() }
    };
    let eval_config = |task: &str, data: &Selection| {
        let mut data = data.clone();
        data.max_test = f.eval.max_examples;
        data.max_dev = f.eval.max_examples;
        EvalConfig {
            task: task.to_string(),
            split: f.eval.split,
            data,
            batch_size: f.eval.batch_size,
            decoding: p.target_train.decoding,
            lengths: p.target_train.lengths,
            head,
            baselines: true,
        }
    };
    let mut groups: Vec<Vec<String>> = targets.iter().map(|t| vec![t.clone()]).collect();
    if f.methods.multitask {
        groups.push(targets.clone());
    }
    // Seed outermost: an interrupted run has every (task, k, method) cell of the first seeds.
    for &seed in &f.targets.seeds {
        for group in &groups {
            for k in ks_for(group) {
                let mut data = p.target_data.clone();
                data.few_shot_k = k;
                data.sample_seed = seed;
                let mut train = p.target_train.clone();
                train.seed = seed;
                let run = match k {
                    Some(k) => format!("k{k}-s{seed}"),
                    None => format!("full-s{seed}"),
                };
                let method_list: Vec<&(String, Method, Option<usize>)> = if group.len() > 1 {
                    methods.iter().filter(|(_, m, _)| matches!(m, Method::Mpt { .. })).take(1).collect()
                } else {
                    methods.iter().collect()
                };
                for (label, method, source) in method_list {
                    let label = if group.len() > 1 { "mpt-multitask".to_string() } else { label.clone() };
                    let adapt_index = stages.len();
                    let name = format!("adapt/{label}/{}/{run}", group.join("+"));
                    stages.push(Stage {
                        name: name.clone(),
                        kind: StageKind::Adapt(AdaptConfig {
                            targets: group.clone(),
                            method: method.clone(),
                            prompt_length: matches!(method, Method::Vanilla { .. }).then_some(f.prompt.length),
                            kappa: None,
                            train: train.clone(),
                            head,
                            data: data.clone(),
                        }),
                        deps: source.iter().copied().collect(),
                        cell: Some(Cell { method: label.clone(), k, seed }),
                    });
                    for task in group {
                        let eval_name = if group.len() > 1 {
                            format!("eval/{label}/{task}/{run}")
                        } else {
                            format!("eval/{}", name.trim_start_matches("adapt/"))
                        };
                        stages.push(Stage {
                            name: eval_name,
                            kind: StageKind::Eval(eval_config(task, &data)),
                            deps: vec![adapt_index],
                            cell: Some(Cell { method: label.clone(), k, seed }),
                        });
                    }
                }
            }
        }
    }
    if f.eval.sources {
        let mut source_evals = Vec::new();
        for (i, task) in sources.iter().enumerate() {
            if let Some(&t) = teacher_ids.get(i) {
                source_evals.push((format!("eval/teacher/{task}"), task.clone(), t, "teacher".to_string()));
            }
            for (name, d) in &distills {
                source_evals.push((format!("eval/distill-{name}/{task}"), task.clone(), *d, format!("distill-{name}")));
            }
        }
        for (name, task, dep, method) in source_evals {
            stages.push(Stage {
                name,
                kind: StageKind::Eval(eval_config(&task, &p.teacher_data)),
                deps: vec![dep],
                cell: Some(Cell { method, k: None, seed: p.teacher_train.seed }),
            });
        }
    }
    Plan { stages }
}
