//! The stage graph of a pipeline: names, order, dependencies and the configs each stage gets.

mod common;

use std::path::Path;

use common::*;
use mpt_adapt::Method;
use mpt_core::init::{PromptInit, TargetInit};
use mpt_distill::{DistillConfig, SharedInit};
use mpt_pipeline::{Plan, Scheduler, StageKind, build};

fn quickstart_like() -> String {
    let text = tiny_toml(Path::new("/tmp/mpt-plan-test"));
    let text = set(&text, "targets", "tasks", "tasks = [\"rte\", \"cb\"]");
    let text = set(&text, "targets", "few_shot", "few_shot = []");
    set(&text, "targets", "seeds", "seeds = [0]")
}

fn names(plan: &Plan) -> Vec<&str> {
    plan.stages.iter().map(|s| s.name.as_str()).collect()
}

fn deps_of<'a>(plan: &'a Plan, name: &str) -> Vec<&'a str> {
    let i = plan.index(name).unwrap_or_else(|| panic!("no stage {name}"));
    plan.stages[i].deps.iter().map(|&d| plan.stages[d].name.as_str()).collect()
}

/// Dependencies come first, names are unique, and every stage's dependency kinds fit.
fn check_graph(plan: &Plan) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in plan.stages.iter().enumerate() {
        assert!(seen.insert(s.name.clone()), "duplicate stage {}", s.name);
        assert!(s.name.starts_with(&format!("{}/", s.kind_name())), "{} is a {}", s.name, s.kind_name());
        for &d in &s.deps {
            assert!(d < i, "{} depends on the later stage {}", s.name, plan.stages[d].name);
        }
        let dep_kinds: Vec<&str> = s.deps.iter().map(|&d| plan.stages[d].kind_name()).collect();
        match &s.kind {
            StageKind::Teacher(_) | StageKind::Provided(_) => assert!(s.deps.is_empty()),
            StageKind::Distill(c) => {
                assert!(dep_kinds.iter().all(|k| *k == "teacher"));
                if !s.deps.is_empty() {
                    let tasks: Vec<String> = s
                        .deps
                        .iter()
                        .map(|&d| plan.stages[d].name.trim_start_matches("teacher/").to_string())
                        .collect();
                    assert_eq!(tasks, c.tasks, "{}: teachers in task order", s.name);
                }
            }
            StageKind::Adapt(c) => {
                assert!(s.deps.len() <= 1);
                match c.method {
                    Method::Vanilla { .. } => assert!(s.deps.is_empty()),
                    Method::Mpt { .. } => assert_eq!(dep_kinds, ["distill"]),
                    Method::Spot => assert_eq!(dep_kinds, ["teacher"]),
                }
                assert!(s.cell.is_some());
            }
            StageKind::Eval(_) => {
                assert_eq!(s.deps.len(), 1);
                assert!(matches!(dep_kinds[0], "adapt" | "teacher" | "distill"));
                assert!(s.cell.is_some());
            }
        }
    }
}

#[test]
fn quickstart_like_plan() {
    let p = parse(&quickstart_like()).unwrap();
    let plan = build(&p);
    check_graph(&plan);
    assert_eq!(
        names(&plan),
        [
            "teacher/mnli",
            "teacher/qnli",
            "distill/mpt",
            "adapt/mpt/rte/full-s0",
            "eval/mpt/rte/full-s0",
            "adapt/vanilla/rte/full-s0",
            "eval/vanilla/rte/full-s0",
            "adapt/mpt/cb/full-s0",
            "eval/mpt/cb/full-s0",
            "adapt/vanilla/cb/full-s0",
            "eval/vanilla/cb/full-s0",
        ]
    );
    assert_eq!(deps_of(&plan, "distill/mpt"), ["teacher/mnli", "teacher/qnli"]);
    assert_eq!(deps_of(&plan, "adapt/mpt/rte/full-s0"), ["distill/mpt"]);
    assert_eq!(deps_of(&plan, "adapt/mpt/cb/full-s0"), ["distill/mpt"]);
    assert!(deps_of(&plan, "adapt/vanilla/cb/full-s0").is_empty());
    assert_eq!(deps_of(&plan, "eval/vanilla/cb/full-s0"), ["adapt/vanilla/cb/full-s0"]);
    assert_eq!(plan.artifact_dir(Path::new("/r"), 2), Path::new("/r/artifacts/distill/mpt"));
    assert_eq!(plan.result_path(Path::new("/r"), 4), Path::new("/r/results/eval/mpt/rte/full-s0.json"));
}

#[test]
fn the_scheduler_hands_out_a_plan_in_plan_order_and_readies_what_its_inputs_allow() {
    let p = parse(&quickstart_like()).unwrap();
    let plan = build(&p);
    let mut schedule = Scheduler::for_plan(&plan);
    let ready = |s: &Scheduler| s.ready().into_iter().map(|i| plan.stages[i].name.as_str()).collect::<Vec<_>>();
    // Nothing settled: the teachers and the stages that start from scratch.
    assert_eq!(
        ready(&schedule),
        ["teacher/mnli", "teacher/qnli", "adapt/vanilla/rte/full-s0", "adapt/vanilla/cb/full-s0"]
    );
    let mut order = Vec::new();
    while let Some(i) = schedule.next_ready() {
        order.push(i);
        schedule.settle(i);
    }
    assert_eq!(order, (0..plan.stages.len()).collect::<Vec<_>>(), "one at a time, the plan order");
    assert!(schedule.unsettled().is_empty());
}

#[test]
fn stage_configs_come_from_the_pipeline() {
    let p = parse(&quickstart_like()).unwrap();
    let plan = build(&p);
    let stage = |name: &str| &plan.stages[plan.index(name).unwrap()].kind;
    let StageKind::Teacher(t) = stage("teacher/qnli") else { panic!() };
    assert_eq!((t.task.as_str(), t.prompt_length), ("qnli", 4));
    assert_eq!(t.init, PromptInit::Vocab);
    assert_eq!(t.train, p.teacher_train);
    assert_eq!(t.data, p.teacher_data);
    let StageKind::Distill(d) = stage("distill/mpt") else { panic!() };
    assert_eq!(d.tasks, ["mnli", "qnli"]);
    assert_eq!((d.kappa, d.rank, d.lambda, d.decomposition), (2, 1, 0.9, true));
    assert_eq!(d.shared_init, SharedInit::TeacherMean);
    assert_eq!(d.train, p.distill_train);
    let StageKind::Adapt(a) = stage("adapt/mpt/cb/full-s0") else { panic!() };
    assert_eq!(a.targets, ["cb"]);
    assert!(matches!(&a.method, Method::Mpt { init: TargetInit::Average, .. }));
    assert_eq!(a.prompt_length, None);
    assert_eq!(a.train.seed, 0, "the target seed drives training");
    assert_eq!((a.data.sample_seed, a.data.few_shot_k), (0, None));
    let StageKind::Adapt(v) = stage("adapt/vanilla/cb/full-s0") else { panic!() };
    assert_eq!(v.prompt_length, Some(4));
    assert!(matches!(&v.method, Method::Vanilla { init: PromptInit::Vocab }));
    let StageKind::Eval(e) = stage("eval/mpt/cb/full-s0") else { panic!() };
    assert_eq!(e.task, "cb");
    assert_eq!(e.split, mpt_data::Split::Test);
    assert_eq!(e.data.max_test, Some(8));
    let cell = plan.stages[plan.index("eval/vanilla/rte/full-s0").unwrap()].cell.clone().unwrap();
    assert_eq!((cell.method.as_str(), cell.k, cell.seed), ("vanilla", None, 0));
}

#[test]
fn seeds_and_few_shot_multiply_the_target_stages() {
    let text = set(&quickstart_like(), "targets", "few_shot", "few_shot = [2, 4]");
    let text = set(&text, "targets", "seeds", "seeds = [0, 7]");
    let plan = build(&parse(&text).unwrap());
    check_graph(&plan);
    // 2 tasks × 2 k × 2 seeds × 2 methods × (adapt + eval) + 2 teachers + 1 distill
    assert_eq!(plan.stages.len(), 2 * 2 * 2 * 2 * 2 + 3);
    let StageKind::Adapt(a) = &plan.stages[plan.index("adapt/mpt/cb/k4-s7").unwrap()].kind else { panic!() };
    assert_eq!((a.data.few_shot_k, a.data.sample_seed, a.train.seed), (Some(4), 7, 7));
    let cell = plan.stages[plan.index("eval/mpt/cb/k4-s7").unwrap()].cell.clone().unwrap();
    assert_eq!((cell.k, cell.seed), (Some(4), 7));
}

#[test]
fn ablations_spot_multitask_and_source_evals_appear_when_enabled() {
    let text = with(
        &quickstart_like(),
        "methods",
        "no_distillation = true\nno_decomposition = true\nmultitask = true\nspot = [\"qnli\"]",
    );
    let text = set(&text, "methods", "mpt", "mpt = [\"average\", \"source:mnli\"]");
    let text = with(&text, "eval", "sources = true");
    let plan = build(&parse(&text).unwrap());
    check_graph(&plan);
    let n = names(&plan);
    for want in [
        "distill/no-distillation",
        "distill/no-decomposition",
        "adapt/mpt-average/rte/full-s0",
        "adapt/mpt-source-mnli/cb/full-s0",
        "adapt/spot-qnli/rte/full-s0",
        "adapt/mpt-no-distillation/rte/full-s0",
        "adapt/mpt-no-decomposition/cb/full-s0",
        "adapt/mpt-multitask/rte+cb/full-s0",
        "eval/mpt-multitask/rte/full-s0",
        "eval/mpt-multitask/cb/full-s0",
        "eval/teacher/mnli",
        "eval/distill-mpt/qnli",
    ] {
        assert!(n.contains(&want), "missing {want} in {n:?}");
    }
    // The no-distillation ablation changes only λ: P* still starts from the teachers' mean.
    assert_eq!(deps_of(&plan, "distill/no-distillation"), ["teacher/mnli", "teacher/qnli"]);
    let StageKind::Distill(nd) = &plan.stages[plan.index("distill/no-distillation").unwrap()].kind else { panic!() };
    let StageKind::Distill(main) = &plan.stages[plan.index("distill/mpt").unwrap()].kind else { panic!() };
    assert_eq!(nd.lambda, 0.0);
    assert_eq!(DistillConfig { lambda: main.lambda, ..nd.clone() }, *main, "only lambda differs");
    assert_eq!(deps_of(&plan, "distill/no-decomposition"), ["teacher/mnli", "teacher/qnli"]);
    let StageKind::Distill(nc) = &plan.stages[plan.index("distill/no-decomposition").unwrap()].kind else { panic!() };
    assert!(!nc.decomposition);
    assert_eq!(deps_of(&plan, "adapt/mpt-no-distillation/rte/full-s0"), ["distill/no-distillation"]);
    assert_eq!(deps_of(&plan, "adapt/mpt-no-decomposition/cb/full-s0"), ["distill/no-decomposition"]);
    assert_eq!(deps_of(&plan, "adapt/spot-qnli/rte/full-s0"), ["teacher/qnli"]);
    assert_eq!(deps_of(&plan, "adapt/mpt-multitask/rte+cb/full-s0"), ["distill/mpt"]);
    let StageKind::Adapt(mt) = &plan.stages[plan.index("adapt/mpt-multitask/rte+cb/full-s0").unwrap()].kind else {
        panic!()
    };
    assert_eq!(mt.targets, ["rte", "cb"]);
    let StageKind::Adapt(src) = &plan.stages[plan.index("adapt/mpt-source-mnli/cb/full-s0").unwrap()].kind else {
        panic!()
    };
    assert!(matches!(&src.method, Method::Mpt { init: TargetInit::Source { task }, .. } if task == "mnli"));
    assert_eq!(deps_of(&plan, "eval/teacher/mnli"), ["teacher/mnli"]);
    assert_eq!(deps_of(&plan, "eval/distill-mpt/qnli"), ["distill/mpt"]);
    assert_eq!(deps_of(&plan, "eval/mpt-multitask/cb/full-s0"), ["adapt/mpt-multitask/rte+cb/full-s0"]);
}

#[test]
fn the_head_only_baseline_is_a_frozen_vanilla_prompt_and_needs_a_trained_head() {
    let text = with(&quickstart_like(), "methods", "head_only = true");
    let plan = build(&parse(&text).unwrap());
    check_graph(&plan);
    let adapt = |name: &str| match &plan.stages[plan.index(name).unwrap_or_else(|| panic!("no stage {name}"))].kind {
        StageKind::Adapt(c) => c.clone(),
        other => panic!("{name} is {other:?}"),
    };
    let (probe, vanilla) = (adapt("adapt/head-only/rte/full-s0"), adapt("adapt/vanilla/rte/full-s0"));
    assert!(probe.freeze_prompt && !vanilla.freeze_prompt);
    assert_eq!(probe.method, vanilla.method);
    assert!(deps_of(&plan, "adapt/head-only/cb/full-s0").is_empty());
    assert_eq!(deps_of(&plan, "eval/head-only/cb/full-s0"), ["adapt/head-only/cb/full-s0"]);
    // Only the flag differs from vanilla prompt tuning: same init, length, data and schedule.
    assert_eq!(mpt_adapt::AdaptConfig { freeze_prompt: false, ..probe }, vanilla);
    // Off by default, so existing pipelines plan the same stages.
    assert!(!names(&build(&parse(&quickstart_like()).unwrap())).iter().any(|n| n.contains("head-only")));

    let text = format!("{text}\n[head]\nkind = \"verbalizer\"\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("methods.head_only") && err.contains("verbalizer"), "{err}");
}

#[test]
fn no_teachers_when_nothing_needs_them() {
    let text = set(&quickstart_like(), "distill", "lambda", "lambda = 0.0\nshared_init = \"fresh\"");
    let plan = build(&parse(&text).unwrap());
    check_graph(&plan);
    assert!(!names(&plan).iter().any(|n| n.starts_with("teacher/")), "{:?}", names(&plan));
    assert_eq!(plan.stages[0].name, "distill/mpt");
    assert!(plan.stages[0].deps.is_empty());
    // SPoT brings them back.
    let text = with(&text, "methods", "spot = [\"mnli\"]");
    let plan = build(&parse(&text).unwrap());
    check_graph(&plan);
    assert_eq!(&names(&plan)[..2], ["teacher/mnli", "teacher/qnli"]);
    assert!(deps_of(&plan, "distill/mpt").is_empty(), "λ = 0 and a fresh P* do not use the teachers");
}

#[test]
fn per_task_few_shot_overrides_shape_the_plan() {
    let text = set(&quickstart_like(), "targets", "few_shot", "few_shot = [2, 20]");
    let text = with(&text, "targets", "few_shot_overrides = { cb = [2, 4] }");
    let plan = build(&parse(&text).unwrap());
    check_graph(&plan);
    let n = names(&plan);
    for want in ["adapt/mpt/rte/k20-s0", "adapt/mpt/cb/k4-s0", "adapt/mpt/cb/k2-s0", "adapt/mpt/rte/k2-s0"] {
        assert!(n.contains(&want), "missing {want} in {n:?}");
    }
    assert!(!n.contains(&"adapt/mpt/cb/k20-s0"));
    assert!(!n.contains(&"adapt/mpt/rte/k4-s0"));
}
