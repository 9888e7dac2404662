//! Extraction that cannot escape: the named hostile archives of issue 11 (link chains,
//! writes through links, duplicate spellings, set-id bits, bombs, entry floods), the link
//! policy for prebuilt binaries, and a source-like tree that must still pass. Shared archive
//! builders and the sandbox used by `archive_props` live here too.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use lmcpp_toolchain::Error;
use lmcpp_toolchain::archive::Error as ArchiveError;
use lmcpp_toolchain::archive::{
    ArchiveKind, ExtractOptions, LinkPolicy, extract_blocking, extract_with, extract_with_blocking,
};

/// One entry of a test archive, with its name spelled exactly as it will be stored.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir(String),
    File(String, Vec<u8>, u32),
    Symlink(String, String),
    Hard(String, String),
}

fn file(name: &str, mode: u32) -> Entry {
    Entry::File(name.to_owned(), name.as_bytes().to_vec(), mode)
}

fn sym(name: &str, target: &str) -> Entry {
    Entry::Symlink(name.to_owned(), target.to_owned())
}

fn dir(name: &str) -> Entry {
    Entry::Dir(name.to_owned())
}

fn hard(name: &str, target: &str) -> Entry {
    Entry::Hard(name.to_owned(), target.to_owned())
}

/// Builds a tar (gzip-compressed when `gz`) with raw, unchecked names and modes.
pub fn build_tar(entries: &[Entry], gz: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, data, kind, mode, link): (&str, &[u8], _, u32, Option<&str>) = match e {
            Entry::Dir(n) => (n, &[], tar::EntryType::Directory, 0o755, None),
            Entry::File(n, d, m) => (n, d, tar::EntryType::Regular, *m, None),
            Entry::Symlink(n, t) => (n, &[], tar::EntryType::Symlink, 0o777, Some(t)),
            Entry::Hard(n, t) => (n, &[], tar::EntryType::Link, 0o644, Some(t)),
        };
        // Names and targets that do not fit the header go in GNU long-name entries, raw.
        let name = long_field(&mut b, name, tar::EntryType::GNULongName);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        if let Some(l) = link {
            let l = long_field(&mut b, l, tar::EntryType::GNULongLink);
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    let raw = b.into_inner().unwrap();
    if gz {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&raw).unwrap();
        enc.finish().unwrap()
    } else {
        raw
    }
}

/// Writes `value` as a GNU long-name (or long-link) entry when it does not fit the 100
/// bytes of the header, and returns what goes in the header itself.
fn long_field<'a>(b: &mut tar::Builder<Vec<u8>>, value: &'a str, kind: tar::EntryType) -> &'a str {
    if value.len() <= 100 {
        return value;
    }
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(kind);
    h.set_size(value.len() as u64 + 1);
    h.set_cksum();
    let mut body = value.as_bytes().to_vec();
    body.push(0);
    b.append(&h, body.as_slice()).unwrap();
    &value[..100]
}

/// Builds a zip of the entries zip can hold: hard links and names the writer refuses
/// (exact duplicates) are left out.
pub fn build_zip(entries: &[Entry]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for e in entries {
        let ok = match e {
            Entry::Dir(n) => w.add_directory(n.as_str(), SimpleFileOptions::default()),
            Entry::File(n, d, m) => {
                let o = SimpleFileOptions::default().unix_permissions(*m);
                w.start_file(n.as_str(), o)
                    .map(|()| w.write_all(d).unwrap())
            }
            Entry::Symlink(n, t) => {
                w.add_symlink(n.as_str(), t.as_str(), SimpleFileOptions::default())
            }
            Entry::Hard(..) => Ok(()),
        };
        // A refused entry leaves the writer usable; the archive is simply without it.
        let _ = ok;
    }
    w.finish().unwrap().into_inner()
}

/// A temp dir laid out as `<tmp>/pad/pad/pad/pad/pad/pad/root/dest`, with an `outside`
/// folder holding a `victim` file beside the padding. The padding keeps anything a broken
/// extractor might write through a `..` chain inside the temp dir, where the snapshot sees it.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub dest: PathBuf,
    pub outside: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let victim = outside.join("victim");
        std::fs::write(&victim, b"victim").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o640)).unwrap();
        let root = tmp.path().join("pad/pad/pad/pad/pad/pad/root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.parent().unwrap().join("beside-root"), b"x").unwrap();
        let dest = root.join("dest");
        Self {
            tmp,
            root,
            dest,
            outside,
        }
    }

    /// Writes `bytes` as an archive outside `root` and returns its path.
    pub fn archive(&self, bytes: &[u8], kind: ArchiveKind) -> PathBuf {
        let name = match kind {
            ArchiveKind::TarGz => "a.tar.gz",
            ArchiveKind::Tar => "a.tar",
            ArchiveKind::Zip => "a.zip",
        };
        let p = self.tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Every path in the temp dir outside `root`, with its type, mode and content.
    pub fn outside_snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.tmp.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p == self.root {
                    continue;
                }
                let m = std::fs::symlink_metadata(&p).unwrap();
                let what = if m.file_type().is_symlink() {
                    format!("link -> {}", std::fs::read_link(&p).unwrap().display())
                } else if m.is_dir() {
                    stack.push(p.clone());
                    format!("dir {:o}", m.mode())
                } else {
                    let body = std::fs::read(&p).unwrap();
                    format!("file {:o} nlink {} {:?}", m.mode(), m.nlink(), body)
                };
                out.insert(p, what);
            }
        }
        out
    }

    /// What `root` holds now (names only).
    pub fn root_listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// Checks what an extraction left: nothing changed outside `root`, `root` holds `dest`
/// alone after success and nothing after failure, no set-id or sticky bit below `dest`,
/// and every link below `dest` resolves inside it. Returns a description of the first
/// violation.
pub fn check_outcome(
    sb: &Sandbox,
    before: &BTreeMap<PathBuf, String>,
    ok: bool,
) -> Result<(), String> {
    let after = sb.outside_snapshot();
    if &after != before {
        let changed: Vec<_> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, v)| format!("{} {v}", k.display()))
            .chain(
                before
                    .keys()
                    .filter(|k| !after.contains_key(*k))
                    .map(|k| format!("{} removed", k.display())),
            )
            .collect();
        return Err(format!("changed outside the root: {changed:?}"));
    }
    let listing = sb.root_listing();
    let want: Vec<String> = if ok { vec!["dest".into()] } else { vec![] };
    if listing != want {
        return Err(format!("root holds {listing:?}, expected {want:?}"));
    }
    if !ok {
        return Ok(());
    }
    let dest = std::fs::canonicalize(&sb.dest).unwrap();
    let mut stack = vec![sb.dest.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                link_stays_inside(&p, &dest)?;
                continue;
            }
            if m.mode() & 0o7000 != 0 {
                return Err(format!("{} has mode {:o}", p.display(), m.mode()));
            }
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    Ok(())
}

/// An oracle for one link, using the kernel for the part of its target that exists: the
/// longest prefix that canonicalises must be inside `dest`, and what follows it (not on
/// disk) must not contain `..`.
fn link_stays_inside(link: &Path, dest: &Path) -> Result<(), String> {
    let target = std::fs::read_link(link).unwrap();
    if target.is_absolute() {
        return Err(format!(
            "{} -> {} is absolute",
            link.display(),
            target.display()
        ));
    }
    let comps: Vec<Component<'_>> = target.components().collect();
    let base = link.parent().unwrap();
    for k in (0..=comps.len()).rev() {
        let candidate = comps[..k].iter().fold(base.to_path_buf(), |p, c| p.join(c));
        let Ok(real) = std::fs::canonicalize(&candidate) else {
            continue;
        };
        if !real.starts_with(dest) {
            return Err(format!(
                "{} -> {} resolves to {}",
                link.display(),
                target.display(),
                real.display()
            ));
        }
        if comps[k..].contains(&Component::ParentDir) {
            return Err(format!(
                "{} -> {} has `..` after a missing part",
                link.display(),
                target.display()
            ));
        }
        return Ok(());
    }
    Err(format!(
        "{}: its own directory does not resolve",
        link.display()
    ))
}

/// Extracts `entries` as tar.gz and (unless `tar_only`) zip, each in a fresh sandbox,
/// checks the outcome, and returns the results.
fn run(entries: &[Entry], options: &ExtractOptions, tar_only: bool) -> Vec<Result<(), Error>> {
    let mut kinds = vec![ArchiveKind::TarGz];
    if !tar_only {
        kinds.push(ArchiveKind::Zip);
    }
    kinds
        .into_iter()
        .map(|kind| {
            let sb = Sandbox::new();
            let bytes = match kind {
                ArchiveKind::Zip => build_zip(entries),
                _ => build_tar(entries, true),
            };
            let a = sb.archive(&bytes, kind);
            let before = sb.outside_snapshot();
            let r = extract_with_blocking(&a, &sb.dest, kind, options);
            check_outcome(&sb, &before, r.is_ok()).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            r
        })
        .collect()
}

fn assert_refused(entries: &[Entry], tar_only: bool, reason_has: &str) {
    for r in run(entries, &ExtractOptions::default(), tar_only) {
        match r {
            Err(Error::Archive(ArchiveError::Unsafe { reason, .. })) => {
                assert!(
                    reason.contains(reason_has),
                    "{reason:?} lacks {reason_has:?}"
                );
            }
            other => panic!("expected a refusal ({reason_has}), got {other:?}"),
        }
    }
}

#[test]
fn a_chain_of_harmless_links_to_the_filesystem_root_is_refused() {
    let mut entries = vec![sym("l1", ".")];
    for i in 2..=12 {
        entries.push(sym(&format!("l{i}"), &format!("l{}/..", i - 1)));
    }
    assert_refused(&entries, false, "outside the destination");
    // The same chain built from the far end: each link names one that does not exist yet.
    entries.reverse();
    assert_refused(&entries, false, "does not exist");
}

#[test]
fn an_entry_spelled_through_a_link_is_never_written_through_it() {
    for spelling in ["./top/p/x", "top//p/x", "top/./p/x", "top/p/./x"] {
        let entries = [
            dir("top/"),
            dir("top/sub/"),
            sym("top/p", "sub"),
            file(spelling, 0o644),
        ];
        assert_refused(&entries, false, "through the link top/p");
    }
    // A link to a folder outside, followed by a file below it.
    let sb = Sandbox::new();
    let out = sb.outside.display().to_string();
    assert_refused(
        &[sym("p", &out), file("./p/victim", 0o777)],
        false,
        "absolute",
    );
    assert_refused(
        &[
            sym("p", "../../../../../../../outside"),
            file("p/victim", 0o777),
        ],
        false,
        "outside",
    );
}

#[test]
fn a_second_spelling_of_one_path_is_refused() {
    let cases: Vec<Vec<Entry>> = vec![
        vec![file("a/f", 0o644), file("./a//f", 0o644)],
        vec![file("a/f", 0o644), file("a/./f", 0o755)],
        vec![sym("p", "q"), file("./p", 0o644)],
        vec![dir("d/"), dir("./d")],
        vec![file("x", 0o644), hard("./x", "x")],
    ];
    for entries in cases {
        let tar_only = entries.iter().any(|e| matches!(e, Entry::Hard(..)));
        assert_refused(&entries, tar_only, "a second time");
    }
    // A zip whose central directory names one path twice in the same spelling.
    let mut bytes = build_zip(&[file("x/a1", 0o644), sym("x/a2", "a1")]);
    let at: Vec<usize> = (0..bytes.len() - 4)
        .filter(|&i| &bytes[i..i + 4] == b"x/a2")
        .collect();
    assert!(!at.is_empty());
    for i in at {
        bytes[i + 3] = b'1';
    }
    let sb = Sandbox::new();
    let a = sb.archive(&bytes, ArchiveKind::Zip);
    let before = sb.outside_snapshot();
    let err = extract_blocking(&a, &sb.dest, ArchiveKind::Zip).unwrap_err();
    assert!(
        matches!(&err, Error::Archive(ArchiveError::Unsafe { reason, .. }) if reason.contains("twice")),
        "{err}"
    );
    check_outcome(&sb, &before, false).unwrap();

    // A path created implicitly as a folder cannot become a file or link later.
    assert_refused(
        &[file("d/f", 0o644), file("d", 0o644)],
        false,
        "would replace d",
    );
    assert_refused(
        &[file("d/f", 0o644), sym("d", ".")],
        false,
        "would replace d",
    );
}

#[test]
fn set_id_and_sticky_bits_are_stripped() {
    let entries = [
        file("suid", 0o4755),
        file("sgid", 0o2750),
        file("sticky", 0o1777),
        file("all", 0o7777),
        file("plain", 0o640),
    ];
    for r in run(&entries, &ExtractOptions::default(), false) {
        r.unwrap();
    }
    let sb = Sandbox::new();
    let a = sb.archive(&build_tar(&entries, false), ArchiveKind::Tar);
    extract_blocking(&a, &sb.dest, ArchiveKind::Tar).unwrap();
    for (name, mode) in [
        ("suid", 0o755),
        ("sgid", 0o750),
        ("sticky", 0o777),
        ("all", 0o777),
        ("plain", 0o640),
    ] {
        let m = std::fs::metadata(sb.dest.join(name)).unwrap().mode();
        assert_eq!(m & 0o7777, mode, "{name}");
    }
}

#[test]
fn links_that_escape_only_after_the_top_folder_is_stripped_are_refused() {
    assert_refused(
        &[dir("top/"), sym("top/l", "..")],
        false,
        "outside the destination",
    );
    assert_refused(
        &[dir("top/"), file("top/x", 0o644), sym("top/l", "../top/x")],
        false,
        "outside the destination",
    );
}

#[test]
fn hard_links_must_name_a_regular_file_extracted_earlier() {
    let sb = Sandbox::new();
    let ok = [file("top/a", 0o644), hard("top/b", "./top/a")];
    let a = sb.archive(&build_tar(&ok, true), ArchiveKind::TarGz);
    extract_blocking(&a, &sb.dest, ArchiveKind::TarGz).unwrap();
    let (ma, mb) = (
        std::fs::metadata(sb.dest.join("a")).unwrap(),
        std::fs::metadata(sb.dest.join("b")).unwrap(),
    );
    assert_eq!(ma.ino(), mb.ino());

    let sb = Sandbox::new();
    let victim = sb.outside.join("victim").display().to_string();
    let cases: Vec<(Vec<Entry>, &str)> = vec![
        (
            vec![hard("h", "later"), file("later", 0o644)],
            "not a regular file",
        ),
        (vec![dir("d/"), hard("h", "d")], "not a regular file"),
        (
            vec![file("f", 0o644), sym("s", "f"), hard("h", "s")],
            "not a regular file",
        ),
        (vec![hard("h", "../../outside/victim")], "contains `..`"),
        (vec![hard("h", &victim)], "absolute"),
    ];
    for (entries, why) in cases {
        assert_refused(&entries, true, why);
    }
}

#[test]
fn decompression_bombs_stop_at_the_ratio_limit() {
    let zeros = vec![0u8; 8 << 20];
    let entries = [Entry::File("bomb".into(), zeros, 0o644)];
    for r in run(&entries, &ExtractOptions::default(), false) {
        match r {
            Err(Error::Archive(ArchiveError::TooLarge {
                option: "max_ratio",
                found,
                limit: 200,
                ..
            })) => assert!(found > 200, "{found}"),
            other => panic!("expected the ratio limit, got {other:?}"),
        }
    }
}

#[test]
fn size_and_entry_limits_are_clear_errors() {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let big = [
        Entry::File("a".into(), noise(300_000), 0o644),
        Entry::File("b".into(), noise(300_000), 0o644),
    ];
    let small = ExtractOptions {
        max_total_bytes: 500_000,
        ..ExtractOptions::default()
    };
    for r in run(&big, &small, false) {
        assert!(
            matches!(
                &r,
                Err(Error::Archive(ArchiveError::TooLarge {
                    option: "max_total_bytes",
                    limit: 500_000,
                    ..
                }))
            ),
            "{r:?}"
        );
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.contains("raise ExtractOptions::max_total_bytes"),
            "{msg}"
        );
    }

    let many: Vec<Entry> = (0..11).map(|i| file(&format!("f{i}"), 0o644)).collect();
    let few = ExtractOptions {
        max_entries: 10,
        ..ExtractOptions::default()
    };
    for r in run(&many, &few, false) {
        assert!(
            matches!(
                r,
                Err(Error::Archive(ArchiveError::TooLarge {
                    option: "max_entries",
                    found: 11,
                    limit: 10,
                    ..
                }))
            ),
            "{r:?}"
        );
    }
    for r in run(&many[..10], &few, false) {
        r.unwrap();
    }
}

#[test]
fn a_huge_tar_header_is_refused_without_buffering_it() {
    // A GNU long-name block of 4 MiB in front of an ordinary file.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    let long = vec![b'a'; 4 << 20];
    h.set_size(long.len() as u64);
    h.set_cksum();
    b.append(&h, long.as_slice()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("f").unwrap();
    h.set_size(1);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let raw = b.into_inner().unwrap();
    let sb = Sandbox::new();
    let a = sb.archive(&raw, ArchiveKind::Tar);
    let err = extract_blocking(&a, &sb.dest, ArchiveKind::Tar).unwrap_err();
    let shown: String = err.to_string().chars().take(300).collect();
    assert!(
        matches!(&err, Error::Archive(ArchiveError::Read { message, .. }) if message.contains("header")),
        "{shown}"
    );
    assert!(sb.root_listing().is_empty());
}

#[tokio::test]
async fn prebuilt_archives_may_hold_library_aliases_and_nothing_else() {
    let libs = [
        dir("llama-b1/"),
        file("llama-b1/llama-server", 0o755),
        sym("llama-b1/libggml.so", "libggml.so.0"),
        sym("llama-b1/libggml.so.0", "libggml.so.0.9.4"),
        file("llama-b1/libggml.so.0.9.4", 0o755),
        sym("llama-b1/libggml-base.dylib", "libggml-base.0.dylib"),
        sym("llama-b1/libggml-base.0.dylib", "libggml-base.0.9.4.dylib"),
        file("llama-b1/libggml-base.0.9.4.dylib", 0o755),
    ];
    for kind in [ArchiveKind::TarGz, ArchiveKind::Zip] {
        let sb = Sandbox::new();
        let bytes = match kind {
            ArchiveKind::Zip => build_zip(&libs),
            _ => build_tar(&libs, true),
        };
        let a = sb.archive(&bytes, kind);
        extract_with(&a, &sb.dest, kind, &ExtractOptions::prebuilt())
            .await
            .unwrap();
        let lib = std::fs::read(sb.dest.join("libggml.so")).unwrap();
        assert_eq!(lib, b"llama-b1/libggml.so.0.9.4", "{kind:?}");
    }

    let refused: Vec<(Vec<Entry>, bool)> = vec![
        (vec![dir("lib/"), sym("bin", "lib")], false),
        (vec![sym("libx.so", "../libx.so.1")], false),
        (vec![sym("libx.so", "./libx.so.1")], false),
        (vec![sym("libx.so.1", "libx.so")], false),
        (vec![sym("libx.so", "liby.so.1")], false),
        (vec![sym("libx.so", "/usr/lib/libx.so.1")], false),
        (
            vec![file("libx.so.1", 0o644), hard("libx.so", "libx.so.1")],
            true,
        ),
    ];
    let prebuilt = ExtractOptions::prebuilt();
    assert_eq!(prebuilt.links, LinkPolicy::LibraryAliasesOnly);
    for (entries, tar_only) in refused {
        for r in run(&entries, &prebuilt, tar_only) {
            assert!(
                matches!(r, Err(Error::Archive(ArchiveError::Unsafe { .. }))),
                "{entries:?}: {r:?}"
            );
        }
    }
    // The default policy still admits an ordinary link inside the tree.
    for r in run(
        &[dir("lib/"), sym("bin", "lib")],
        &ExtractOptions::default(),
        false,
    ) {
        r.unwrap();
    }
}

#[test]
fn a_source_like_tree_passes_with_the_defaults() {
    // Like a llama.cpp source archive: one top folder, nested dirs, text-like files, a few
    // relative links inside the tree, an explicit entry for every directory.
    let mut entries = vec![dir("llama.cpp-b1/")];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for d in 0..40 {
        entries.push(dir(&format!("llama.cpp-b1/d{d}/")));
        for s in 0..3 {
            entries.push(dir(&format!("llama.cpp-b1/d{d}/s{s}/")));
            for f in 0..20 {
                let body: String = (0..300)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        [
                            "int ", "x", " = ", "1", ";\n", "return ", "(", ")", "{", "}",
                        ][(x % 10) as usize]
                    })
                    .collect();
                entries.push(Entry::File(
                    format!("llama.cpp-b1/d{d}/s{s}/f{f}.cpp"),
                    body.into_bytes(),
                    if f == 0 { 0o755 } else { 0o644 },
                ));
            }
        }
    }
    entries.push(sym("llama.cpp-b1/d0/link", "../d1/s0/f0.cpp"));
    entries.push(sym("llama.cpp-b1/d2/s1/up", "../../d3"));
    entries.push(sym("llama.cpp-b1/README", "d0/s0/f1.cpp"));
    for r in run(&entries, &ExtractOptions::default(), false) {
        r.unwrap();
    }
}

#[test]
fn a_kept_sub_folder_is_checked_as_the_new_root() {
    // Valid for the whole tree, but `vendor/llama.cpp` alone must not lead outside itself.
    let cases: Vec<Vec<Entry>> = vec![
        vec![
            dir("pkg/vendor/llama.cpp/"),
            file("pkg/setup.py", 0o644),
            sym("pkg/vendor/llama.cpp/l", "../../setup.py"),
        ],
        vec![
            dir("pkg/other/"),
            file("pkg/other/CMakeLists.txt", 0o644),
            dir("pkg/vendor/"),
            sym("pkg/vendor/llama.cpp", "../other"),
        ],
    ];
    for entries in cases {
        let sb = Sandbox::new();
        let a = sb.archive(&build_tar(&entries, true), ArchiveKind::TarGz);
        extract_blocking(&a, &sb.dest, ArchiveKind::TarGz).unwrap();
        lmcpp_toolchain::archive::verify_links(&a, &sb.dest).unwrap();
        let err = lmcpp_toolchain::archive::verify_links(&a, &sb.dest.join("vendor/llama.cpp"))
            .unwrap_err();
        assert!(
            matches!(err, Error::Archive(ArchiveError::Unsafe { .. })),
            "{err}"
        );
    }
}
