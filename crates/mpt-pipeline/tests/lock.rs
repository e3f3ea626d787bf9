//! The run-folder lock (issue 15): one holder at a time, the holder's pid in the error, the
//! lock gone with its holder.

use mpt_pipeline::PipelineError;
use mpt_pipeline::run::{LOCK_FILE, RunLock};

#[test]
fn a_held_run_folder_is_refused_naming_the_pid_and_freed_on_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("runs/x");
    let held = RunLock::acquire(&run_dir).expect("a fresh folder is free");
    let pid = std::process::id();
    assert_eq!(std::fs::read_to_string(run_dir.join(LOCK_FILE)).unwrap(), format!("{pid}\n"));
    match RunLock::acquire(&run_dir) {
        Err(e @ PipelineError::Locked { .. }) => {
            let PipelineError::Locked { pid: holder, .. } = &e else { unreachable!() };
            assert_eq!(*holder, Some(pid));
            let text = e.to_string();
            assert!(text.contains(&format!("pid {pid}")) && text.contains(LOCK_FILE), "{text}");
        }
        other => panic!("expected PipelineError::Locked, got {other:?}"),
    }
    drop(held);
    // A lock file left by a dead holder (its pid still inside) is taken over.
    std::fs::write(run_dir.join(LOCK_FILE), "999999999\n").unwrap();
    let _again = RunLock::acquire(&run_dir).expect("the holder is gone");
    assert_eq!(std::fs::read_to_string(run_dir.join(LOCK_FILE)).unwrap(), format!("{pid}\n"));
}
