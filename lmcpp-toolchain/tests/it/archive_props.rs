//! Property tests of extraction: random link graphs (symlinks and hard links with `.`,
//! `..`, absolute and chained targets), random entry orders and spellings, as real tar and
//! zip archives. Whatever the archive, nothing outside the root changes, nothing below the
//! destination has a set-id or sticky bit, and every extracted link resolves inside it.

use lmcpp_toolchain::Error;
use lmcpp_toolchain::archive::Error as ArchiveError;
use lmcpp_toolchain::archive::{ArchiveKind, ExtractOptions, LinkPolicy, extract_with_blocking};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::archive_escape::{Entry, Sandbox, build_tar, build_zip, check_outcome};

/// Names entries and link targets are made of; `libx.so*` give the alias policy something
/// to admit.
const NAMES: [&str; 7] = ["a", "b", "p", "l1", "l2", "libx.so", "libx.so.1"];

/// A path of 1 to 3 names, spelled with a random mix of `./`, `//` and `/./`.
fn spelled_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((prop::sample::select(&NAMES[..]), 0..3usize), 1..=3),
        any::<bool>(),
    )
        .prop_map(|(parts, lead)| {
            let mut s = if lead { "./".to_owned() } else { String::new() };
            for (i, (name, sep)) in parts.iter().enumerate() {
                if i > 0 {
                    s.push_str(["/", "//", "/./"][*sep]);
                }
                s.push_str(name);
            }
            s
        })
}

/// A link target before the sandbox's absolute paths are known.
#[derive(Debug, Clone)]
enum Target {
    /// Made of names, `.` and `..`.
    Relative(String),
    /// `<tmp>/outside` followed by this suffix.
    Outside(&'static str),
}

fn target() -> impl Strategy<Value = Target> {
    let piece = prop_oneof![
        3 => prop::sample::select(&NAMES[..]),
        2 => Just("."),
        3 => Just(".."),
    ];
    prop_oneof![
        6 => prop::collection::vec(piece, 1..=4).prop_map(|p| Target::Relative(p.join("/"))),
        1 => prop::sample::select(&["", "/victim", "/.."][..]).prop_map(Target::Outside),
    ]
}

#[derive(Debug, Clone)]
enum Spec {
    Dir(String),
    File(String, u32),
    Symlink(String, Target),
    Hard(String, Target),
}

fn spec() -> impl Strategy<Value = Spec> {
    let mode = prop::sample::select(&[0o644, 0o755, 0o4755, 0o2755, 0o1755, 0o7777, 0o000][..]);
    prop_oneof![
        2 => spelled_path().prop_map(|p| Spec::Dir(format!("{p}/"))),
        3 => (spelled_path(), mode).prop_map(|(p, m)| Spec::File(p, m)),
        4 => (spelled_path(), target()).prop_map(|(p, t)| Spec::Symlink(p, t)),
        2 => (spelled_path(), target()).prop_map(|(p, t)| Spec::Hard(p, t)),
    ]
}

/// Up to 8 entries in a random order, optionally all under one `top/` folder.
fn archive_specs() -> impl Strategy<Value = (Vec<Spec>, bool)> {
    (
        prop::collection::vec(spec(), 1..=8).prop_shuffle(),
        any::<bool>(),
    )
}

fn entries(sb: &Sandbox, specs: &[Spec], top: bool) -> Vec<Entry> {
    let prefix = |p: &str| {
        if top {
            format!("top/{p}")
        } else {
            p.to_owned()
        }
    };
    let target = |t: &Target| match t {
        Target::Relative(r) => r.clone(),
        Target::Outside(suffix) => format!("{}{suffix}", sb.outside.display()),
    };
    specs
        .iter()
        .map(|s| match s {
            Spec::Dir(p) => Entry::Dir(prefix(p)),
            Spec::File(p, m) => Entry::File(prefix(p), p.as_bytes().to_vec(), *m),
            Spec::Symlink(p, t) => Entry::Symlink(prefix(p), target(t)),
            // Hard-link targets are archive paths, so they get the prefix too (unless absolute).
            Spec::Hard(p, t @ Target::Relative(_)) => Entry::Hard(prefix(p), prefix(&target(t))),
            Spec::Hard(p, t) => Entry::Hard(prefix(p), target(t)),
        })
        .collect()
}

fn extract_and_check(
    sb: &Sandbox,
    specs: &[Spec],
    top: bool,
    kind: ArchiveKind,
    links: LinkPolicy,
) -> Result<(), TestCaseError> {
    // Each case starts from an empty root, even after a failed case (while shrinking).
    for e in std::fs::read_dir(&sb.root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let entries = entries(sb, specs, top);
    let bytes = match kind {
        ArchiveKind::Zip => build_zip(&entries),
        ArchiveKind::TarGz => build_tar(&entries, true),
        ArchiveKind::Tar => build_tar(&entries, false),
    };
    let archive = sb.archive(&bytes, kind);
    let before = sb.outside_snapshot();
    let options = ExtractOptions {
        links,
        ..ExtractOptions::default()
    };
    let r = extract_with_blocking(&archive, &sb.dest, kind, &options);
    if let Err(e) = &r {
        prop_assert!(
            matches!(e, Error::Archive(ArchiveError::Unsafe { .. })),
            "{kind:?}: unexpected error {e}"
        );
    }
    check_outcome(sb, &before, r.is_ok()).map_err(|e| TestCaseError::fail(format!("{kind:?}: {e}")))
}

#[test]
fn random_link_graphs_never_escape() {
    // One sandbox for all cases keeps each case to the extraction itself.
    let sb = Sandbox::new();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let cases = (archive_specs(), any::<bool>(), prop::bool::weighted(0.2));
    runner
        .run(&cases, |((specs, top), gz, aliases_only)| {
            let links = if aliases_only {
                LinkPolicy::LibraryAliasesOnly
            } else {
                LinkPolicy::WithinRoot
            };
            let tar = if gz {
                ArchiveKind::TarGz
            } else {
                ArchiveKind::Tar
            };
            extract_and_check(&sb, &specs, top, tar, links)?;
            extract_and_check(&sb, &specs, top, ArchiveKind::Zip, links)
        })
        .unwrap();
}
