//! What a training stage records in `artifact.json` under `metrics`: the dev scores of the
//! selected step (reused from the loop's evaluation, not recomputed) and the run's curves.
//! Test scores are the evaluation stage's job.

use serde_json::{Value, json};

use crate::trainer::TrainOutcome;

/// `{"dev": {task: {metric: v}}, "dev_score", "best_step", "steps", "stopped_early",
/// "train_seconds", "curve": {"losses": [[step, loss]], "evals": [[step, score]]}}`.
pub fn final_metrics<M>(outcome: &TrainOutcome<M>) -> Value {
    json!({
        "dev": outcome.best_eval.details,
        "dev_score": outcome.best_eval.score,
        "best_step": outcome.best_eval.step,
        "steps": outcome.steps,
        "stopped_early": outcome.stopped_early,
        "train_seconds": outcome.seconds,
        "curve": {
            "losses": outcome.history.losses,
            "evals": outcome.history.evals.iter().map(|e| json!([e.step, e.score])).collect::<Vec<_>>(),
        },
    })
}
