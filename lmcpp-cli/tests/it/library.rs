//! The library without the command: `lmcpp` with `default-features = false` depends on
//! none of the command's crates (argument parsing, progress bars, the config file).

use std::process::Command;

/// The crates only the `lmcpp` command uses (feature `cli`).
const COMMAND_ONLY: &[&str] = &["clap", "indicatif", "anyhow", "toml"];

#[test]
fn the_library_alone_pulls_in_none_of_the_commands_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let tree = |features: &[&str]| -> Vec<String> {
        let out = Command::new(&cargo)
            .args([
                "tree",
                "-p",
                "lmcpp-cli",
                "-e",
                "normal",
                "--prefix",
                "none",
            ])
            .args(features)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    };
    let library = tree(&["--no-default-features", "--features", "blocking"]);
    assert!(library.iter().any(|c| c == "lmcpp-server"), "{library:?}");
    for krate in COMMAND_ONLY {
        assert!(
            !library.iter().any(|c| c == krate),
            "{krate} in {library:?}"
        );
    }
    // The command itself has them: the check above looks at the right names.
    let command = tree(&[]);
    for krate in COMMAND_ONLY {
        assert!(
            command.iter().any(|c| c == krate),
            "{krate} not in {command:?}"
        );
    }
}
