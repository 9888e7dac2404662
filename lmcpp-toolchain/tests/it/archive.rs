//! Archive extraction: top-level folder stripping and hostile archives.

use lmcpp_toolchain::Error;
use lmcpp_toolchain::archive::Error as ArchiveError;
use lmcpp_toolchain::archive::{ArchiveKind, extract};

use crate::fixtures::{Item, tar_gz, zip};

async fn try_extract(bytes: &[u8], kind: ArchiveKind) -> (tempfile::TempDir, Result<(), Error>) {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join(match kind {
        ArchiveKind::Zip => "a.zip",
        _ => "a.tar.gz",
    });
    std::fs::write(&a, bytes).unwrap();
    let r = extract(&a, &dir.path().join("out"), kind).await;
    (dir, r)
}

#[tokio::test]
async fn strips_the_single_top_folder_and_keeps_modes() {
    let items = [
        Item::Dir("top/"),
        Item::File("top/bin/llama-server", b"x".to_vec(), 0o755),
        // Windows has no symbolic links for unprivileged users (see the test below).
        #[cfg(unix)]
        Item::Symlink("top/bin/link", "llama-server"),
    ];
    for (bytes, kind) in [
        (tar_gz(&items), ArchiveKind::TarGz),
        (zip(&items), ArchiveKind::Zip),
    ] {
        let (dir, r) = try_extract(&bytes, kind).await;
        r.unwrap();
        let exe = dir.path().join("out/bin/llama-server");
        assert!(exe.is_file(), "{kind:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&exe).unwrap().permissions().mode();
            assert_eq!(mode & 0o111, 0o111, "{kind:?}");
            assert_eq!(
                std::fs::read_link(dir.path().join("out/bin/link")).unwrap(),
                std::path::Path::new("llama-server")
            );
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "only the archive and out/ remain");
    }
}

/// Where unprivileged users cannot make symbolic links, an archive holding one is refused
/// naming the link, rather than extracted without it.
#[cfg(windows)]
#[tokio::test]
async fn a_symbolic_link_is_refused_where_the_platform_has_none() {
    let items = [
        Item::Dir("top/"),
        Item::File("top/bin/llama-server", b"x".to_vec(), 0o755),
        Item::Symlink("top/bin/link", "llama-server"),
    ];
    for (bytes, kind) in [
        (tar_gz(&items), ArchiveKind::TarGz),
        (zip(&items), ArchiveKind::Zip),
    ] {
        let (dir, r) = try_extract(&bytes, kind).await;
        let err = r.unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{kind:?}: {err}");
        assert!(!dir.path().join("out").exists(), "{kind:?}");
    }
}

#[tokio::test]
async fn hostile_archives_are_rejected_and_write_nothing_outside() {
    let cases: Vec<(&str, Vec<Item<'_>>)> = vec![
        (
            "zip-slip",
            vec![Item::File("top/../../evil", b"x".to_vec(), 0o644)],
        ),
        (
            "absolute",
            vec![Item::File("/tmp/lmcpp-evil-abs", b"x".to_vec(), 0o644)],
        ),
        (
            "symlink escape",
            vec![Item::Symlink("top/link", "../../../etc")],
        ),
        ("absolute symlink", vec![Item::Symlink("top/link", "/etc")]),
        (
            "write through symlink",
            vec![
                Item::Symlink("top/dir", "."),
                Item::File("top/dir/x", b"x".to_vec(), 0o644),
            ],
        ),
        (
            "hard link escape",
            vec![Item::HardLink("top/h", "../outside")],
        ),
    ];
    for (what, items) in &cases {
        let mut kinds = vec![(tar_gz(items), ArchiveKind::TarGz)];
        if !items.iter().any(|i| matches!(i, Item::HardLink(..))) && *what != "absolute" {
            kinds.push((zip(items), ArchiveKind::Zip));
        }
        for (bytes, kind) in kinds {
            let (dir, r) = try_extract(&bytes, kind).await;
            let err = r.unwrap_err();
            assert!(
                matches!(err, Error::Archive(ArchiveError::Unsafe { .. })),
                "{what} {kind:?}: {err}"
            );
            assert!(!dir.path().join("out").exists(), "{what} {kind:?}");
            assert!(!dir.path().join("evil").exists());
            assert!(!dir.path().parent().unwrap().join("evil").exists());
            assert!(!std::path::Path::new("/tmp/lmcpp-evil-abs").exists());
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(left.len(), 1, "{what} {kind:?}: scratch left behind");
        }
    }
}

#[tokio::test]
async fn corrupt_archives_are_typed_errors() {
    let (_d, r) = try_extract(b"not a zip at all", ArchiveKind::Zip).await;
    assert!(matches!(
        r.unwrap_err(),
        Error::Archive(ArchiveError::Read { .. })
    ));
    let (_d, r) = try_extract(b"\x1f\x8bgarbage", ArchiveKind::TarGz).await;
    assert!(matches!(
        r.unwrap_err(),
        Error::Archive(ArchiveError::Read { .. })
    ));
}
