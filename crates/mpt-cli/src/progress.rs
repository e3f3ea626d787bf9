//! Progress bars for training (steps, loss, examples/s, ETA) drawn on stderr with indicatif.

use std::cell::RefCell;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mpt_train::{EvalPoint, Progress};

/// Draws one bar per training run; silent when stderr is not a terminal or `quiet`.
pub struct Bars {
    bar: RefCell<Option<ProgressBar>>,
    quiet: bool,
}

impl Bars {
    /// A reporter; `quiet` hides the bars (logs still go to tracing).
    pub fn new(quiet: bool) -> Self {
        Self { bar: RefCell::new(None), quiet }
    }
}

impl Progress for Bars {
    fn begin(&self, stage: &str, total: usize) {
        let bar = ProgressBar::new(total as u64);
        if self.quiet {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} steps {msg} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(stage.to_string());
        *self.bar.borrow_mut() = Some(bar);
    }

    fn step(&self, step: usize, loss: f64, examples_per_sec: f64) {
        if let Some(bar) = self.bar.borrow().as_ref() {
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4} {examples_per_sec:.1} ex/s"));
        }
    }

    fn eval(&self, point: &EvalPoint, best: f64) {
        if let Some(bar) = self.bar.borrow().as_ref() {
            bar.println(format!("  step {:>5}: dev {:.4} (best {:.4})", point.step, point.score, best));
        }
    }

    fn end(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}
