//! Final dev/test scores of a trained prompt module, in the shape stages store in
//! `artifact.json` under `metrics`.

use mpt_core::TaskPrompts;
use mpt_models::{Backbone, TextTokenizer};
use serde_json::{Value, json};

use crate::data::TaskData;
use crate::error::Result;
use crate::eval::{Decoding, evaluate};
use crate::head::Heads;
use crate::trainer::TrainOutcome;

/// Scores every task `k` of `module` on its dev and test data, plus the run's curves:
/// `{"dev": {task: {metric: v}}, "test": {...}, "test_n": {task: n}, "best_step", "steps",
/// "stopped_early", "train_seconds", "curve": {"losses": [[step, loss]], "evals": [...]}}`.
#[allow(clippy::too_many_arguments)]
pub fn final_metrics<M: TaskPrompts>(
    backbone: &Backbone,
    tokenizer: &TextTokenizer,
    heads: &Heads,
    outcome: &TrainOutcome<M>,
    tasks: &[(&TaskData, &TaskData)],
    batch_size: usize,
    decoding: Decoding,
) -> Result<Value> {
    let mut dev = serde_json::Map::new();
    let mut test = serde_json::Map::new();
    let mut test_n = serde_json::Map::new();
    for (k, (dev_data, test_data)) in tasks.iter().enumerate() {
        let prompt = outcome.best.prompt_of(k).without_autodiff();
        let name = dev_data.task.name.to_string();
        let (_, d) = evaluate(backbone, heads, k, dev_data, &prompt, batch_size, decoding, tokenizer)?;
        let (_, t) = evaluate(backbone, heads, k, test_data, &prompt, batch_size, decoding, tokenizer)?;
        dev.insert(name.clone(), json!(d.0));
        test.insert(name.clone(), json!(t.0));
        test_n.insert(name, json!(test_data.len()));
    }
    Ok(json!({
        "dev": dev,
        "test": test,
        "test_n": test_n,
        "best_step": outcome.best_eval.step,
        "steps": outcome.steps,
        "stopped_early": outcome.stopped_early,
        "train_seconds": outcome.seconds,
        "curve": {
            "losses": outcome.history.losses,
            "evals": outcome.history.evals.iter().map(|e| json!([e.step, e.score])).collect::<Vec<_>>(),
        },
    }))
}
