//! One snapshot id and one snapshot-directory flag for every subcommand, as a user types
//! them: `11.1/x86_64`, `11.1.3_x86_64`, `11.1.3/x86_64`, `caps_11.1.3_x86_64.json` and a
//! file path name the same snapshot in `plan`, `caps show`, `diff` and `drift`, and
//! `--caps-dir DIR` is accepted by every subcommand (the old `--dir`/`--caps` spellings
//! still work but are no longer shown).

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn capsdata() -> String {
    root().join("capsdata").display().to_string()
}

fn qconform(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qconform"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run qconform")
}

fn ok(args: &[&str]) -> Vec<u8> {
    let out = qconform(args);
    assert!(
        out.status.success(),
        "{args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const SPELLINGS: &[&str] = &[
    "11.1/x86_64",
    "11.1.3_x86_64",
    "11.1.3/x86_64",
    "caps_11.1.3_x86_64.json",
    "11/x86_64",
];

#[test]
fn test_every_subcommand_accepts_every_spelling_of_a_snapshot() {
    let dir = capsdata();
    let file = root().join("capsdata/caps_11.1.3_x86_64.json");
    let file = file.to_str().expect("utf-8 path");
    let domain = root().join("cases/q35-oracle-mixed/domain.xml");
    let domain = domain.to_str().expect("utf-8 path");
    let args_of = |what: &str, snap: &str| -> Vec<String> {
        let v: Vec<&str> = match what {
            "plan" => vec!["plan", domain, "--caps", snap],
            "caps show" => vec!["caps", "show", snap, "--machine", "q35"],
            "diff" => vec!["diff", "10.0/x86_64", snap],
            _ => vec!["drift", domain, "--from", "10.0.2_x86_64", "--to", snap],
        };
        v.iter()
            .map(|x| (*x).to_owned())
            .chain(["--caps-dir".to_owned(), dir.clone()])
            .collect()
    };
    for what in ["plan", "caps show", "diff", "drift"] {
        let run = |snap: &str| {
            let a = args_of(what, snap);
            ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let by_file = run(file);
        assert!(!by_file.is_empty(), "{what}");
        for s in SPELLINGS {
            assert_eq!(run(s), by_file, "{what} with {s}");
        }
    }
}

#[test]
fn test_caps_dir_is_the_one_flag_and_old_spellings_are_hidden_aliases() {
    let dir = capsdata();
    let domain = root().join("cases/q35-oracle-mixed/domain.xml");
    let domain = domain.to_str().expect("utf-8 path");
    let list = ok(&["caps", "list", "--caps-dir", &dir]);
    assert_eq!(ok(&["caps", "list", "--dir", &dir]), list);
    let diff = ok(&["diff", "10.0/s390x", "11.1/s390x", "--caps-dir", &dir]);
    assert_eq!(
        ok(&["diff", "10.0/s390x", "11.1/s390x", "--caps", &dir]),
        diff
    );
    let drift = ok(&[
        "drift",
        domain,
        "--from",
        "7.2/x86_64",
        "--to",
        "11.1/x86_64",
        "--caps-dir",
        &dir,
    ]);
    assert_eq!(
        ok(&[
            "drift",
            domain,
            "--from",
            "7.2/x86_64",
            "--to",
            "11.1/x86_64",
            "--caps",
            &dir,
        ]),
        drift
    );
    // plan --caps still names one snapshot.
    ok(&["plan", domain, "--caps", "11.1/x86_64", "--caps-dir", &dir]);
    for sub in [
        &["caps", "list"][..],
        &["caps", "show"],
        &["plan"],
        &["diff"],
        &["drift"],
        &["run"],
        &["report"],
        &["probe"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        let help = String::from_utf8(ok(&args)).expect("utf-8");
        assert!(help.contains("--caps-dir <DIR>"), "{sub:?}:\n{help}");
        assert!(
            !help.contains("--dir <") && !help.contains("--caps <DIR"),
            "{sub:?} still shows an old spelling:\n{help}"
        );
    }
    // The run and report flags are parsed (a missing results directory is the error).
    let t = tempfile::tempdir().expect("tempdir");
    let missing = t.path().join("none");
    let out = qconform(&[
        "report",
        "--results",
        missing.to_str().expect("utf-8"),
        "--caps-dir",
        &dir,
        "--out",
        t.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("none"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
