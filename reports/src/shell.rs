//! Shell-style quoting of an argv for display, so a command line shown in a report or a
//! failure message can be pasted into a POSIX shell as is.

/// One argument quoted for a POSIX shell: left bare when it only holds characters that
/// are never special (`[A-Za-z0-9]` and `-_./,=:+@`), otherwise in single quotes with
/// each `'` written as `'\''`. The empty argument becomes `''`.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ',' | '=' | ':' | '+' | '@')
        });
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// An argv as one shell line (`-device 'virtio-net-pci,addr=0x3'`): each argument
/// through [`shell_quote`], joined by spaces.
pub fn shell_join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| shell_quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}
