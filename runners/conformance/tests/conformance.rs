//! The conformance matrix as a libtest-mimic test target: every case of `cases/` against
//! every snapshot of `capsdata/`, one trial per stage.
//!
//! ```text
//! cargo test -p qconform-conformance --test conformance                 # everything
//! cargo test -p qconform-conformance --test conformance -- zpci-        # a topic
//! cargo test -p qconform-conformance --test conformance -- '[plan]'     # replay only
//! QCONFORM_BLESS=1 cargo test -p qconform-conformance --test conformance -- q35-basic@
//! QCONFORM_GUEST=all cargo nextest run -p qconform-conformance --partition count:1/4
//! ```
//!
//! Environment: `QCONFORM_BLESS`, `QCONFORM_GUEST` (subset|all|none), `QCONFORM_TIERS`,
//! `QCONFORM_RESULTS_DIR` (default `<target>/qconform-results`), `QCONFORM_CASES_DIR`,
//! `QCONFORM_CAPS_DIR`, `QCONFORM_MATRIX_ROOT`, `QCONFORM_GUEST_ROOT`,
//! `QCONFORM_QEMU_JOBS`, `QCONFORM_LIVE_TIMEOUT`, `QCONFORM_GUEST_TIMEOUT`,
//! `QCONFORM_QEMU_<major>_<minor>[_<micro>]_<arch>`.
//!
//! Every process writes the records of the trials it ran (and of the ignored ones it
//! listed) into its own file in the results directory, so nextest shards and several hosts
//! can be merged by `qconform report`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use qconform_conformance::binaries::BinaryIndex;
use qconform_conformance::results::{ResultsWriter, host_name};
use qconform_conformance::rig::Rig;
use qconform_conformance::snapshots::file_name_for;
use qconform_conformance::{Config, TrialSpec, build_trials, load_corpus, load_snapshots};
use qconform_reports::results::Event;

/// `<target>` from the test binary's path (`<target>/<profile>/deps/conformance-*`).
fn target_dir(workspace: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|e| e.ancestors().nth(3).map(Path::to_path_buf))
        })
        .unwrap_or_else(|| workspace.join("target"))
}

/// When one trial is asked for by exact name (what nextest does for every test), only its
/// case and snapshot are loaded: a snapshot is large and there are many processes.
fn narrowing(args: &Arguments) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let (true, Some(filter)) = (args.exact, args.filter.as_deref()) else {
        return (None, None);
    };
    let name = filter
        .split_once("] ")
        .filter(|(k, _)| k.starts_with('['))
        .map_or(filter, |(_, n)| n);
    let Some((case, rest)) = name.split_once('@') else {
        return (Some(vec![name.to_owned()]), None);
    };
    let mut parts = rest.split('/');
    match (parts.next(), parts.next()) {
        (Some(v), Some(a)) => (Some(vec![case.to_owned()]), Some(vec![file_name_for(v, a)])),
        _ => (None, None),
    }
}

fn reason_class(reason: &str) -> String {
    let head = reason.split(':').next().unwrap_or(reason);
    let head: String = head.chars().take(70).collect();
    head.trim().to_owned()
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let target = target_dir(&workspace);
    let cfg = match Config::from_env(&workspace, &target) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let (only_cases, only_snaps) = narrowing(&args);
    let narrowed = only_cases.is_some();
    let corpus = match load_corpus(&cfg.cases_dir, only_cases.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "conformance: cannot read the corpus {}: {e}",
                cfg.cases_dir.display()
            );
            return ExitCode::from(2);
        }
    };
    let snaps = load_snapshots(&cfg.caps_dir, only_snaps.as_deref());
    let binaries = BinaryIndex::new(cfg.matrix_root.as_deref(), Some(&cfg.cache_dir));
    let rig = match Rig::new(
        cfg.qemu_slots,
        binaries,
        cfg.guest_root.clone(),
        cfg.live_timeout,
        cfg.guest_timeout,
    ) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("conformance: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let specs = build_trials(&cfg, &corpus, &snaps, Some(&rig));

    if args.list {
        if args.ignored {
            // nextest lists ignored tests separately and never runs them: record them here
            // (a fixed file per host, rewritten on every listing) so the report shows why.
            let w = ResultsWriter::with_file_name(
                &cfg.results_dir,
                &format!("listed-ignored-{}.jsonl", host_name()),
            );
            for s in specs.iter().filter(|s| s.ignore.is_some()) {
                w.push(s.ignored_record());
            }
            let _ = w.finish();
        }
    } else if !narrowed {
        let mut per_stage: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for s in &specs {
            let e = per_stage.entry(s.kind()).or_default();
            e.0 += 1;
            if let Some(r) = &s.ignore {
                e.1 += 1;
                *reasons.entry(reason_class(r)).or_default() += 1;
            }
        }
        let stages: Vec<String> = per_stage
            .iter()
            .map(|(k, (n, i))| format!("{k} {n} ({i} ignored)"))
            .collect();
        eprintln!(
            "conformance: {} cases, {} snapshots, trials: {}; guest selection {}; bless {}",
            corpus.cases.len(),
            snaps.snapshots.len(),
            stages.join(", "),
            cfg.guest.as_str(),
            if cfg.bless { "on" } else { "off" }
        );
        for (r, n) in &reasons {
            eprintln!("conformance:   ignored {n:>4} × {r}");
        }
        eprintln!("conformance: records go to {}", cfg.results_dir.display());
    }

    let writer = Arc::new(ResultsWriter::new(&cfg.results_dir, "conformance"));
    let cfg = Arc::new(cfg);
    let mut ignored_specs: Vec<(Trial, TrialSpec)> = Vec::new();
    let mut trials = Vec::with_capacity(specs.len());
    for spec in specs {
        let is_ignored = spec.ignore.is_some();
        let name = spec.name.clone();
        let kind = spec.kind();
        if is_ignored {
            let probe = Trial::test(name.clone(), || Ok(())).with_kind(kind);
            ignored_specs.push((probe, spec.clone()));
        }
        let (cfg, rig, writer) = (Arc::clone(&cfg), Arc::clone(&rig), Arc::clone(&writer));
        trials.push(
            Trial::ignorable_test(name, move || {
                let record = spec.run(&cfg, Some(&rig));
                let outcome = match record.event {
                    Event::Ok => Ok(Completion::Completed),
                    Event::Ignored => Ok(Completion::ignored_with(
                        record.message.clone().unwrap_or_default(),
                    )),
                    Event::Failed => {
                        let mut msg = record.message.clone().unwrap_or_default();
                        if record.rig_error {
                            msg = format!("rig error (not a product failure): {msg}");
                        }
                        if let Some(tail) = &record.stderr_tail {
                            msg.push_str(&format!("\n\nQEMU stderr (tail):\n{tail}"));
                        }
                        Err(Failed::from(msg))
                    }
                };
                writer.push(record);
                outcome
            })
            .with_kind(kind)
            .with_ignored_flag(is_ignored),
        );
    }
    let conclusion = libtest_mimic::run(&args, trials);
    if !args.list && !args.include_ignored && !args.ignored {
        for (probe, spec) in &ignored_specs {
            if !args.is_filtered_out(probe) {
                writer.push(spec.ignored_record());
            }
        }
    }
    if !args.list
        && let Err(e) = writer.finish()
    {
        eprintln!(
            "conformance: cannot write records to {}: {e}",
            cfg.results_dir.display()
        );
    }
    conclusion.exit_code()
}
