//! The release binary against hostile surroundings: output paths that are links, pipes
//! and directories; a stdout whose reader went away or whose disk is full; inputs that
//! are too large, not UTF-8, of the wrong shape or misnamed. Real files, real pipes.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn capsdata() -> String {
    root().join("capsdata").display().to_string()
}

fn domain() -> String {
    root()
        .join("cases/q35-oracle-mixed/domain.xml")
        .display()
        .to_string()
}

fn qconform() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qconform"));
    c.current_dir(root());
    c
}

fn run(args: &[&str]) -> Output {
    qconform().args(args).output().expect("run qconform")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn file_type(p: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(p).expect("stat").file_type()
}

// ---- issue 12 item 1: --out keeps what the path is -------------------------------------

#[test]
fn test_out_writes_through_a_symlink_and_a_fifo_and_refuses_a_directory() {
    use std::os::unix::fs::FileTypeExt as _;
    let t = tempfile::tempdir().expect("tempdir");
    let caps = capsdata();
    let diff = |out: &Path| {
        run(&[
            "diff",
            "10.0/s390x",
            "11.1/s390x",
            "--caps-dir",
            &caps,
            "--out",
            s(out),
        ])
    };
    let expected = run(&["diff", "10.0/s390x", "11.1/s390x", "--caps-dir", &caps]).stdout;
    assert!(!expected.is_empty());

    // A symbolic link stays a link; its target gets the output.
    let target = t.path().join("target.txt");
    std::fs::write(&target, "old\n").expect("write");
    let link = t.path().join("link");
    std::os::unix::fs::symlink("target.txt", &link).expect("symlink");
    let o = diff(&link);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(file_type(&link).is_symlink(), "the link was replaced");
    assert_eq!(std::fs::read(&target).expect("read"), expected);

    // A regular file is replaced atomically; a new path is created.
    let new = t.path().join("new.txt");
    assert!(diff(&new).status.success());
    assert_eq!(std::fs::read(&new).expect("read"), expected);

    // A FIFO is written through and stays a FIFO.
    let fifo = t.path().join("fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            std::fs::File::open(&fifo)
                .expect("open fifo")
                .read_to_end(&mut v)
                .expect("read fifo");
            v
        })
    };
    let o = diff(&fifo);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(reader.join().expect("reader"), expected);
    assert!(file_type(&fifo).is_fifo(), "the FIFO was replaced");

    // A character device is written through (/dev/null stays a device).
    let o = diff(Path::new("/dev/null"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(file_type(Path::new("/dev/null")).is_char_device());

    // A directory is refused, untouched.
    let d = t.path().join("dir");
    std::fs::create_dir(&d).expect("mkdir");
    let o = diff(&d);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    assert!(file_type(&d).is_dir());

    let leftovers: Vec<String> = std::fs::read_dir(t.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

// ---- issue 12 item 4: stdout that cannot be written ------------------------------------

/// Every subcommand that prints to stdout, with arguments that make it print.
fn printing_commands(results: &Path, out: &Path) -> Vec<Vec<String>> {
    let caps = capsdata();
    let d = domain();
    let v = |a: &[&str]| a.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    vec![
        v(&["plan", "--help"]),
        v(&["--version"]),
        v(&["plan", &d, "--caps", "11.1/x86_64", "--caps-dir", &caps]),
        v(&[
            "plan",
            &d,
            "--caps",
            "11.1/x86_64",
            "--caps-dir",
            &caps,
            "--format",
            "json",
        ]),
        v(&["caps", "list", "--caps-dir", &caps]),
        v(&["caps", "show", "11.1/x86_64", "--caps-dir", &caps]),
        v(&[
            "caps",
            "show",
            "11.1/x86_64",
            "--machine",
            "q35",
            "--caps-dir",
            &caps,
        ]),
        v(&["diff", "10.0/s390x", "11.1/s390x", "--caps-dir", &caps]),
        v(&[
            "drift",
            &d,
            "--from",
            "7.2/x86_64",
            "--to",
            "11.1/x86_64",
            "--caps-dir",
            &caps,
        ]),
        v(&[
            "report",
            "--results",
            s(results),
            "--caps-dir",
            s(&root().join("no-such-capsdata")),
            "--out",
            s(out),
        ]),
    ]
}

fn results_fixture(dir: &Path) -> PathBuf {
    let p = dir.join("results.jsonl");
    let rec = serde_json::json!({
        "type": "test", "event": "ok", "name": "[plan] x@11.1.3/x86_64/q35",
        "stage": "plan", "case": "x", "qemu_version": "11.1.3", "arch": "x86_64",
        "machine": "q35", "exec_time": 0.01
    });
    std::fs::write(&p, format!("{rec}\n")).expect("write results");
    p
}

#[test]
fn test_a_closed_stdout_pipe_ends_quietly() {
    let t = tempfile::tempdir().expect("tempdir");
    let results = results_fixture(t.path());
    for args in printing_commands(&results, &t.path().join("out")) {
        // A pipe whose reader is gone before the command writes: every write is EPIPE.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let o = qconform()
            .args(&args)
            .stdout(Stdio::from(writer))
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("panicked") && !stderr(&o).contains("error"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn test_a_full_stdout_is_an_error_naming_stdout() {
    if !Path::new("/dev/full").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and no /dev/full"
        );
        eprintln!("no /dev/full: skipped");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let results = results_fixture(t.path());
    for args in printing_commands(&results, &t.path().join("out")) {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let o = qconform()
            .args(&args)
            .stdout(Stdio::from(full))
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("standard output") && !e.contains("panicked"),
            "{args:?}: {e}"
        );
    }
}

// ---- issue 12 item 5: bounded input ----------------------------------------------------

#[test]
fn test_oversized_input_is_refused_naming_file_and_limit() {
    let caps = capsdata();
    let o = run(&[
        "plan",
        "/dev/zero",
        "--caps",
        "11.1/x86_64",
        "--caps-dir",
        &caps,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/dev/zero") && stderr(&o).contains("16 MiB"),
        "{}",
        stderr(&o)
    );
    // A snapshot streamed from a pipe is capped too.
    let t = tempfile::tempdir().expect("tempdir");
    let fifo = t.path().join("snap.json");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
                return;
            };
            let chunk = vec![b' '; 1 << 20];
            // Stops when the reader closes (EPIPE) or after 80 MiB.
            for _ in 0..80 {
                if f.write_all(&chunk).is_err() {
                    return;
                }
            }
        })
    };
    let o = run(&["plan", &domain(), "--caps", s(&fifo)]);
    writer.join().expect("writer");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("snap.json") && stderr(&o).contains("64 MiB"),
        "{}",
        stderr(&o)
    );
}

// ---- issue 12 item 6: messages and exit codes ------------------------------------------

#[test]
fn test_snapshot_of_the_wrong_shape_says_what_is_wrong() {
    let t = tempfile::tempdir().expect("tempdir");
    for (text, want) in [
        ("[1, 2]", "is an array"),
        ("null", "is null"),
        ("{\"foo\": 1}", "no schema_version (its keys: foo)"),
        ("42", "is a number"),
    ] {
        let p = t.path().join("snap.json");
        std::fs::write(&p, text).expect("write");
        let o = run(&["plan", &domain(), "--caps", s(&p)]);
        assert_eq!(o.status.code(), Some(2), "{text}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{text}: {}", stderr(&o));
        assert!(!stderr(&o).contains("schema_version 0"), "{}", stderr(&o));
    }
}

#[test]
fn test_an_arch_alone_is_not_echoed_as_an_id() {
    let o = run(&[
        "plan",
        &domain(),
        "--caps",
        "x86_64",
        "--caps-dir",
        &capsdata(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(!e.contains("x86/64"), "{e}");
    assert!(e.contains("\"x86_64\"") && e.contains("11.1/x86_64"), "{e}");
}

#[test]
fn test_drift_on_malformed_xml_is_bad_input() {
    let t = tempfile::tempdir().expect("tempdir");
    let p = t.path().join("broken.xml");
    std::fs::write(&p, "<domain type='kvm'><devices>").expect("write");
    for extra in [&[][..], &["--exit-code"]] {
        let mut args = vec![
            "drift",
            s(&p),
            "--from",
            "10.0/x86_64",
            "--to",
            "11.1/x86_64",
            "--caps-dir",
        ];
        let caps = capsdata();
        args.push(&caps);
        args.extend_from_slice(extra);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("broken.xml") && e.contains("malformed XML"),
            "{e}"
        );
        assert!(!String::from_utf8_lossy(&o.stdout).contains("stable"));
    }
}

/// A snapshot directory with two good snapshots and a corrupt and a misnamed one.
fn mixed_capsdir(dir: &Path) {
    for f in ["caps_10.0.2_s390x.json", "caps_11.1.3_s390x.json"] {
        std::fs::copy(root().join("capsdata").join(f), dir.join(f)).expect("copy");
    }
    std::fs::write(dir.join("caps_9.0.0_x86_64.json"), "{\"foo\": 1}").expect("write");
    // The content of 11.1.3 under the name of 11.1.2.
    std::fs::copy(
        root().join("capsdata/caps_11.1.3_s390x.json"),
        dir.join("caps_11.1.2_s390x.json"),
    )
    .expect("copy");
}

#[test]
fn test_caps_list_lists_the_rest_and_flags_a_corrupt_or_misnamed_file() {
    let t = tempfile::tempdir().expect("tempdir");
    mixed_capsdir(t.path());
    let o = run(&["caps", "list", "--caps-dir", s(t.path())]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("10.0.2   s390x") && out.contains("11.1.3   s390x"),
        "{out}"
    );
    let e = stderr(&o);
    assert!(e.contains("caps_9.0.0_x86_64.json"), "{e}");
    assert!(
        e.contains("caps_11.1.2_s390x.json")
            && e.contains("file name says 11.1.2/s390x but the snapshot holds 11.1.3/s390x"),
        "{e}"
    );
}

#[test]
fn test_a_misnamed_snapshot_is_refused() {
    let t = tempfile::tempdir().expect("tempdir");
    mixed_capsdir(t.path());
    for args in [
        vec!["plan", &domain(), "--caps", "11.1.2/s390x"],
        vec!["caps", "show", "11.1.2_s390x"],
        vec!["diff", "10.0/s390x", "11.1.2/s390x"],
    ]
    .iter()
    .map(|a| a.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>())
    {
        let o = qconform()
            .args(&args)
            .args(["--caps-dir", s(t.path())])
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("file name says 11.1.2/s390x"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn test_run_with_a_corrupt_snapshot_is_bad_input_not_a_failure() {
    let t = tempfile::tempdir().expect("tempdir");
    mixed_capsdir(t.path());
    let out = t.path().join("results");
    let o = run(&[
        "run",
        "--tiers",
        "plan",
        "--no-probe",
        "--caps-dir",
        s(t.path()),
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("caps_9.0.0_x86_64.json"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn test_non_utf8_input_errors_carry_a_position_and_the_file() {
    let t = tempfile::tempdir().expect("tempdir");
    let caps = capsdata();
    let utf16 = t.path().join("utf16.xml");
    let mut bytes = vec![0xff, 0xfe];
    for c in "<domain type='kvm'/>".encode_utf16() {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    std::fs::write(&utf16, bytes).expect("write");
    let latin1 = t.path().join("latin1.xml");
    std::fs::write(
        &latin1,
        b"<domain type='kvm'>\n  <name>caf\xe9</name>\n</domain>\n",
    )
    .expect("write");
    for (p, want) in [
        (
            &utf16,
            "UTF-16 (byte order mark at byte 0, line 1, column 1)",
        ),
        (&latin1, "byte 0xe9 at offset 31 (line 2, column 12)"),
    ] {
        let o = run(&["plan", s(p), "--caps", "11.1/x86_64", "--caps-dir", &caps]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(s(p)) && stderr(&o).contains(want),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn test_caps_show_says_what_a_non_snapshot_path_is() {
    let caps = capsdata();
    for (p, want) in [
        (caps.as_str(), "is a directory"),
        ("/dev/zero", "is a character device"),
    ] {
        let o = run(&["caps", "show", p]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(want) && !stderr(&o).contains("no snapshot"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn test_run_and_report_refuse_an_out_root_that_is_a_file() {
    let t = tempfile::tempdir().expect("tempdir");
    let file = t.path().join("not-a-dir");
    std::fs::write(&file, "keep me\n").expect("write");
    let o = run(&[
        "run",
        "--tiers",
        "plan",
        "--no-probe",
        "--filter",
        "fit-floppy-pc@11.1.3/x86_64",
        "--caps-dir",
        &capsdata(),
        "--out",
        s(&file),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot write the report"),
        "{}",
        stderr(&o)
    );
    let results = results_fixture(t.path());
    let o = run(&["report", "--results", s(&results), "--out", s(&file)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me\n");
}
