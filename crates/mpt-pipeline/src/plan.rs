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

/// Builds the plan of a validated pipeline: the teachers, the distillations, per seed × target
/// group × k × method an adaptation and its evaluations, then (with `eval.sources`) the
/// evaluations on the source tasks.
pub fn build(p: &Pipeline) -> Plan {
    let sources: Vec<String> = p.file.sources.tasks.iter().map(|t| canonical(t)).collect();
    let mut stages: Vec<Stage> = Vec::new();
    let teachers = push_teachers(p, &sources, &mut stages);
    let distills = push_distills(p, &sources, &teachers, &mut stages);
    let methods = methods(p, &sources, &teachers, &distills);
    push_adaptations(p, &methods, &mut stages);
    if p.file.eval.sources {
        push_source_evals(p, &sources, &teachers, &distills, &mut stages);
    }
    for stage in &mut stages {
        mark_declared_tasks(&mut stage.kind);
    }
    Plan { stages }
}

/// Puts the digest of the task-file tasks a stage works on into its data selection (none for
/// built-in tasks: their configs, and so their artifact ids, are unchanged).
fn mark_declared_tasks(kind: &mut StageKind) {
    let (tasks, data) = match kind {
        StageKind::Teacher(c) => (vec![c.task.clone()], &mut c.data),
        StageKind::Distill(c) => (c.tasks.clone(), &mut c.data),
        StageKind::Adapt(c) => (c.targets.clone(), &mut c.data),
        StageKind::Eval(c) => (vec![c.task.clone()], &mut c.data),
        StageKind::Provided(_) => return,
    };
    let digests: Vec<String> = tasks.iter().filter_map(|t| mpt_data::taskfile::digest(t)).collect();
    if !digests.is_empty() {
        data.task_digest = Some(digests.join("+"));
    }
}

/// Whether any stage uses the teachers: distillation (λ > 0), `P*` from their mean, SPoT, or
/// the source-task evaluations.
fn needs_teachers(p: &Pipeline) -> bool {
    let f = &p.file;
    f.distill.lambda > 0.0
        || f.distill.shared_init == SharedStart::TeacherMean
        || !f.methods.spot.is_empty()
        || f.eval.sources
}

/// Pushes one teacher per source task (trained, or taken from `sources.from`) when any stage
/// uses them; returns their indices in `sources` order (empty when none is needed).
fn push_teachers(p: &Pipeline, sources: &[String], stages: &mut Vec<Stage>) -> Vec<usize> {
    let f = &p.file;
    let mut teacher_ids = Vec::new();
    if !needs_teachers(p) {
        return teacher_ids;
    }
    for task in sources {
        teacher_ids.push(stages.len());
        let kind = match &f.sources.from {
            Some(lib) => StageKind::Provided(lib.join(task)),
            None => StageKind::Teacher(TeacherConfig {
                task: task.clone(),
                prompt_length: f.prompt.length,
                init: p.init.clone(),
                train: p.teacher_train.clone(),
                head: f.head,
                data: p.teacher_data.clone(),
            }),
        };
        stages.push(Stage { name: format!("teacher/{task}"), kind, deps: Vec::new(), cell: None });
    }
    teacher_ids
}

/// Pushes the MPT distillation and the ablations `methods` asks for; returns each one's name
/// (`mpt`, `no-distillation`, `no-decomposition`) and index.
fn push_distills(
    p: &Pipeline,
    sources: &[String],
    teacher_ids: &[usize],
    stages: &mut Vec<Stage>,
) -> Vec<(String, usize)> {
    let f = &p.file;
    let kappa = p.kappa();
    let distill = |lambda: f64, decomposition: bool, shared_init: SharedInit| DistillConfig {
        tasks: sources.to_vec(),
        prompt_length: if matches!(shared_init, SharedInit::Fresh { .. }) && lambda == 0.0 {
            Some(f.prompt.length)
        } else {
            None
        },
        rank: f.prompt.rank,
        lambda,
        temperature: f.distill.temperature,
        hidden_loss: f.distill.hidden_loss,
        kappa,
        decomposition,
        shared_init,
        factor_init: FactorInit::Ones,
        train: p.distill_train.clone(),
        head: f.head,
        data: p.distill_data.clone(),
    };
    let main_init = f.distill.shared_init.with_init(&p.init);
    let mut distills: Vec<(String, usize)> = Vec::new();
    let mut push = |name: &str, config: DistillConfig| {
        let deps = if config.needs_teachers() { teacher_ids.to_vec() } else { Vec::new() };
        distills.push((name.to_string(), stages.len()));
        stages.push(Stage { name: format!("distill/{name}"), kind: StageKind::Distill(config), deps, cell: None });
    };
    push("mpt", distill(f.distill.lambda, true, main_init.clone()));
    if f.methods.no_distillation {
        // Only λ differs from the MPT distillation: same P* start, same factors, same data.
        push("no-distillation", distill(0.0, true, main_init.clone()));
    }
    if f.methods.no_decomposition {
        push("no-decomposition", distill(f.distill.lambda, false, main_init));
    }
    distills
}

/// One way to adapt a target: its report label, how the prompt starts, and the stage whose
/// artifact it starts from.
struct MethodPlan {
    label: String,
    method: Method,
    source: Option<usize>,
    freeze_prompt: bool,
}

impl MethodPlan {
    /// A method that trains its prompt.
    fn trained(label: impl Into<String>, method: Method, source: Option<usize>) -> Self {
        Self { label: label.into(), method, source, freeze_prompt: false }
    }
}

/// The adaptation methods, in report order: the MPT inits, vanilla, SPoT per source, the
/// ablations, then the head-only baseline.
fn methods(p: &Pipeline, sources: &[String], teacher_ids: &[usize], distills: &[(String, usize)]) -> Vec<MethodPlan> {
    let f = &p.file;
    let distill_index =
        |name: &str| distills.iter().find(|(n, _)| n == name).map(|(_, i)| *i).expect("pushed by push_distills");
    let mpt = |init: TargetInit| Method::Mpt { init, fresh: FactorInit::Ones };
    let mut methods = Vec::new();
    let inits = p.mpt_inits().expect("validated by Pipeline::parse");
    for (text, init) in f.methods.mpt.iter().zip(inits) {
        let label = if f.methods.mpt.len() == 1 && init == TargetInit::Average {
            "mpt".to_string()
        } else {
            format!("mpt-{}", text.replace(':', "-"))
        };
        methods.push(MethodPlan::trained(label, mpt(init), Some(distill_index("mpt"))));
    }
    if f.methods.vanilla {
        methods.push(MethodPlan::trained("vanilla", Method::Vanilla { init: p.init.clone() }, None));
    }
    for src in &f.methods.spot {
        let src = canonical(src);
        let i = sources.iter().position(|s| *s == src).expect("validated");
        methods.push(MethodPlan::trained(format!("spot-{src}"), Method::Spot, Some(teacher_ids[i])));
    }
    if f.methods.no_distillation {
        methods.push(MethodPlan::trained(
            "mpt-no-distillation",
            mpt(TargetInit::Average),
            Some(distill_index("no-distillation")),
        ));
    }
    if f.methods.no_decomposition {
        methods.push(MethodPlan::trained(
            "mpt-no-decomposition",
            mpt(TargetInit::Average),
            Some(distill_index("no-decomposition")),
        ));
    }
    if f.methods.head_only {
        methods.push(MethodPlan {
            label: "head-only".into(),
            method: Method::Vanilla { init: p.init.clone() },
            source: None,
            freeze_prompt: true,
        });
    }
    methods
}

/// The few-shot k values of a target group (None = full data); a multi-target group uses the
/// k values every member supports.
fn ks_for(p: &Pipeline, group: &[String]) -> Vec<Option<usize>> {
    let mut lists = group.iter().map(|t| p.few_shot_for(t));
    let first = lists.next().unwrap_or_default();
    let common: Vec<usize> =
        first.into_iter().filter(|k| group.iter().all(|t| p.few_shot_for(t).contains(k))).collect();
    if common.is_empty() { vec![None] } else { common.into_iter().map(Some).collect() }
}

/// The evaluation of `task` with the example selection `data` (capped by `eval.max_examples`).
fn eval_config(p: &Pipeline, task: &str, data: &Selection) -> EvalConfig {
    let f = &p.file;
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
        head: f.head,
        baselines: true,
    }
}

/// Pushes per seed, target group (each target; all of them with `methods.multitask`), k and
/// method an adaptation followed by the evaluation of each of its targets.
fn push_adaptations(p: &Pipeline, methods: &[MethodPlan], stages: &mut Vec<Stage>) {
    let f = &p.file;
    let targets: Vec<String> = f.targets.tasks.iter().map(|t| canonical(t)).collect();
    let mut groups: Vec<Vec<String>> = targets.iter().map(|t| vec![t.clone()]).collect();
    if f.methods.multitask {
        groups.push(targets.clone());
    }
    // Seed outermost: an interrupted run has every (task, k, method) cell of the first seeds.
    for &seed in &f.targets.seeds {
        for group in &groups {
            for k in ks_for(p, group) {
                let mut data = p.target_data.clone();
                data.few_shot_k = k;
                data.sample_seed = seed;
                let mut train = p.target_train.clone();
                train.seed = seed;
                let run = match k {
                    Some(k) => format!("k{k}-s{seed}"),
                    None => format!("full-s{seed}"),
                };
                let method_list: Vec<&MethodPlan> = if group.len() > 1 {
                    methods.iter().filter(|m| matches!(m.method, Method::Mpt { .. })).take(1).collect()
                } else {
                    methods.iter().collect()
                };
                for MethodPlan { label, method, source, freeze_prompt } in method_list {
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
                            head: f.head,
                            data: data.clone(),
                            freeze_prompt: *freeze_prompt,
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
                            kind: StageKind::Eval(eval_config(p, task, &data)),
                            deps: vec![adapt_index],
                            cell: Some(Cell { method: label.clone(), k, seed }),
                        });
                    }
                }
            }
        }
    }
}

/// Pushes, per source task, the evaluation of its teacher and of every distillation on it.
fn push_source_evals(
    p: &Pipeline,
    sources: &[String],
    teacher_ids: &[usize],
    distills: &[(String, usize)],
    stages: &mut Vec<Stage>,
) {
    let mut source_evals = Vec::new();
    for (i, task) in sources.iter().enumerate() {
        if let Some(&t) = teacher_ids.get(i) {
            source_evals.push((format!("eval/teacher/{task}"), task.clone(), t, "teacher".to_string()));
        }
        for (name, d) in distills {
            source_evals.push((format!("eval/distill-{name}/{task}"), task.clone(), *d, format!("distill-{name}")));
        }
    }
    for (name, task, dep, method) in source_evals {
        stages.push(Stage {
            name,
            kind: StageKind::Eval(eval_config(p, &task, &p.teacher_data)),
            deps: vec![dep],
            cell: Some(Cell { method, k: None, seed: p.teacher_train.seed }),
        });
    }
}
