//! Which files of a Hugging Face repository make the model a reference asks for: the
//! quantisation, every part of a split GGUF, and the multimodal projector that goes with it.
//!
//! Rules:
//! - A split GGUF (`<name>-00001-of-00003.gguf` … `-00003-of-00003.gguf`) is one model;
//!   naming any of its parts names all of them, and the first part is the one to load.
//! - `owner/repo` alone takes the repository's only model, else the first quantisation of
//!   [`QUANT_PREFERENCE`] it has (llama.cpp's `-hf` default is `Q4_K_M`).
//! - `mmproj*.gguf` files are projectors, never models. The one that goes with a model is
//!   the only projector in the model's folder (else in the repository), else the one whose
//!   name carries the first tag of [`MMPROJ_PREFERENCE`] found, else the first by name.

use std::collections::BTreeMap;

use crate::error::Result;

use super::hf::TreeEntry;
use super::source::{HfSelector, HfSource};

/// The quantisations `owner/repo` without a selector tries, in order: `Q4_K_M` as llama.cpp
/// does, then the other 4-bit kinds, then larger ones up to full precision (better answers
/// at more memory), then smaller ones.
pub const QUANT_PREFERENCE: &[&str] = &[
    "Q4_K_M", "Q4_K_S", "Q4_K", "IQ4_XS", "IQ4_NL", "Q4_0", "Q4_1", "Q5_K_M", "Q5_K_S", "Q5_K",
    "Q5_0", "Q5_1", "Q6_K", "Q8_0", "BF16", "F16", "F32", "Q3_K_L", "Q3_K_M", "Q3_K_S", "IQ3_M",
    "IQ3_XS", "IQ3_XXS", "Q2_K", "IQ2_M", "IQ2_XS", "IQ2_XXS",
];

/// Projector precisions in order of preference when a folder holds several.
pub const MMPROJ_PREFERENCE: &[&str] = &["F16", "BF16", "F32", "Q8_0"];

/// One file to fetch, with its SHA-256 and size when the listing gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chosen {
    pub(crate) path: String,
    pub(crate) sha256: Option<String>,
    pub(crate) size: Option<u64>,
}

impl From<&TreeEntry> for Chosen {
    fn from(e: &TreeEntry) -> Self {
        Self {
            path: e.path.clone(),
            sha256: e.sha256(),
            size: e.size,
        }
    }
}

/// The files of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selection {
    /// The model's files in load order (one, or every part of a split model).
    pub(crate) parts: Vec<Chosen>,
    /// The projector that goes with it, when asked for and present.
    pub(crate) mmproj: Option<Chosen>,
}

/// How strictly `owner/repo` without a selector is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultRule {
    /// The full rule (a listing of the repository, or a cache that is all there is).
    Preference,
    /// Only [`QUANT_PREFERENCE`]'s first entry: a cache may hold some files of a repository
    /// but not the one the hub would pick.
    FirstOnly,
}

/// `<prefix>-NNNNN-of-MMMMM.gguf` → (prefix, N, M).
pub(crate) fn split_part(path: &str) -> Option<(&str, u32, u32)> {
    let stem = path.get(..path.len().checked_sub(5)?)?;
    if !path[stem.len()..].eq_ignore_ascii_case(".gguf") || stem.len() < 15 {
        return None;
    }
    if !stem.is_char_boundary(stem.len() - 15) {
        return None;
    }
    let (prefix, tail) = stem.split_at(stem.len() - 15);
    let tail = tail.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        tail[r.clone()].iter().all(u8::is_ascii_digit).then(|| {
            std::str::from_utf8(&tail[r])
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
        })?
    };
    if tail[0] != b'-' || &tail[6..10] != b"-of-" {
        return None;
    }
    let (n, m) = (digits(1..6)?, digits(10..15)?);
    (n >= 1 && n <= m && !prefix.is_empty()).then_some((prefix, n, m))
}

/// `<prefix>-NNNNN-of-MMMMM.gguf`.
fn part_name(prefix: &str, n: u32, m: u32) -> String {
    format!("{prefix}-{n:05}-of-{m:05}.gguf")
}

/// Whether `tag` appears in `name` as a whole word (`Q4_K` does not match `Q4_K_M`).
pub(crate) fn has_tag(name: &str, tag: &str) -> bool {
    let name = name.to_ascii_uppercase();
    let tag = tag.to_ascii_uppercase();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    name.match_indices(&tag).any(|(i, _)| {
        !word(name[..i].chars().next_back()) && !word(name[i + tag.len()..].chars().next())
    })
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn folder(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

pub(crate) fn is_mmproj(path: &str) -> bool {
    let name = base_name(path).to_ascii_lowercase();
    name.starts_with("mmproj") && name.ends_with(".gguf")
}

/// A model: a single file or the parts of a split file.
struct Group<'a> {
    /// The name used for matching and messages (the first part's name for splits).
    name: String,
    /// Parts found, by index (1 for a single file).
    parts: BTreeMap<u32, &'a TreeEntry>,
    /// Number of parts expected.
    total: u32,
    prefix: Option<String>,
}

impl Group<'_> {
    fn missing(&self) -> Vec<String> {
        let Some(prefix) = &self.prefix else {
            return Vec::new();
        };
        (1..=self.total)
            .filter(|n| !self.parts.contains_key(n))
            .map(|n| part_name(prefix, n, self.total))
            .collect()
    }
}

fn groups<'a>(models: &[&'a TreeEntry]) -> Vec<Group<'a>> {
    let mut by_key: BTreeMap<String, Group<'a>> = BTreeMap::new();
    for e in models {
        match split_part(&e.path) {
            Some((prefix, n, m)) => {
                let g = by_key
                    .entry(format!("{prefix}\u{0}{m}"))
                    .or_insert_with(|| Group {
                        name: part_name(prefix, 1, m),
                        parts: BTreeMap::new(),
                        total: m,
                        prefix: Some(prefix.to_owned()),
                    });
                g.parts.insert(n, e);
            }
            None => {
                by_key.insert(
                    e.path.clone(),
                    Group {
                        name: e.path.clone(),
                        parts: BTreeMap::from([(1, *e)]),
                        total: 1,
                        prefix: None,
                    },
                );
            }
        }
    }
    by_key.into_values().collect()
}

/// Picks the model (and its projector when `mmproj`) for `src` among `entries`.
pub(crate) fn select(
    src: &HfSource,
    entries: &[TreeEntry],
    mmproj: bool,
    rule: DefaultRule,
) -> Result<Selection> {
    let ggufs: Vec<&TreeEntry> = entries
        .iter()
        .filter(|e| e.kind != "directory" && e.path.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    let models: Vec<&TreeEntry> = ggufs
        .iter()
        .copied()
        .filter(|e| !is_mmproj(&e.path))
        .collect();
    let groups = groups(&models);
    let available = || groups.iter().map(|g| g.name.clone()).collect::<Vec<_>>();
    let no_match = |wanted: String| {
        crate::models::error::Error::NoMatchingFile {
            repo: src.repo.clone(),
            revision: src.revision.clone(),
            wanted,
            available: available(),
        }
        .into()
    };
    let tagged = |tag: &str| -> Vec<&Group<'_>> {
        groups.iter().filter(|g| has_tag(&g.name, tag)).collect()
    };
    let ambiguous = |wanted: String, many: &[&Group<'_>]| {
        no_match(format!(
            "{wanted} (ambiguous: {}; name the file with :<file>.gguf)",
            many.iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    let group: &Group<'_> = match &src.selector {
        HfSelector::File(f) => {
            let found = groups
                .iter()
                .find(|g| g.parts.values().any(|e| &e.path == f) || &g.name == f);
            found.ok_or_else(|| no_match(format!("file {f}")))?
        }
        HfSelector::Quant(q) => match tagged(q).as_slice() {
            [one] => one,
            [] => return Err(no_match(format!("quantisation {q}"))),
            many => return Err(ambiguous(format!("quantisation {q}"), many)),
        },
        HfSelector::Default => {
            let tags = match rule {
                DefaultRule::Preference if groups.len() == 1 => &[][..],
                DefaultRule::Preference => QUANT_PREFERENCE,
                DefaultRule::FirstOnly => &QUANT_PREFERENCE[..1],
            };
            let mut found = None;
            if rule == DefaultRule::Preference && groups.len() == 1 {
                found = groups.first();
            }
            for tag in tags {
                match tagged(tag).as_slice() {
                    [] => continue,
                    [one] => {
                        found = Some(*one);
                        break;
                    }
                    many => return Err(ambiguous(format!("quantisation {tag}"), many)),
                }
            }
            found.ok_or_else(|| {
                no_match(format!(
                    "a single GGUF model or one of the quantisations {}",
                    QUANT_PREFERENCE.join(", ")
                ))
            })?
        }
    };
    let missing = group.missing();
    if !missing.is_empty() {
        return Err(crate::models::error::Error::SplitIncomplete {
            repo: src.repo.clone(),
            model: group.name.clone(),
            missing,
        }
        .into());
    }
    let parts: Vec<Chosen> = group.parts.values().map(|e| Chosen::from(*e)).collect();
    let mmproj = if mmproj {
        let first = parts.first().map_or("", |c| c.path.as_str());
        pick_mmproj(&ggufs, folder(first))
    } else {
        None
    };
    Ok(Selection { parts, mmproj })
}

fn pick_mmproj(ggufs: &[&TreeEntry], model_folder: &str) -> Option<Chosen> {
    let all: Vec<&TreeEntry> = ggufs
        .iter()
        .copied()
        .filter(|e| is_mmproj(&e.path))
        .collect();
    let near: Vec<&TreeEntry> = all
        .iter()
        .copied()
        .filter(|e| folder(&e.path) == model_folder)
        .collect();
    let mut pool = if near.is_empty() { all } else { near };
    pool.sort_by(|a, b| a.path.cmp(&b.path));
    if pool.len() > 1 {
        for tag in MMPROJ_PREFERENCE {
            if let Some(e) = pool.iter().find(|e| has_tag(base_name(&e.path), tag)) {
                return Some(Chosen::from(*e));
            }
        }
    }
    pool.first().map(|e| Chosen::from(*e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entries(names: &[&str]) -> Vec<TreeEntry> {
        names
            .iter()
            .map(|n| TreeEntry::file((*n).into(), Some(1), None))
            .collect()
    }

    fn src(selector: HfSelector) -> HfSource {
        HfSource {
            repo: "o/r".into(),
            selector,
            revision: "main".into(),
        }
    }

    fn pick(sel: HfSelector, list: &[TreeEntry]) -> Result<Vec<String>> {
        select(&src(sel), list, false, DefaultRule::Preference)
            .map(|s| s.parts.into_iter().map(|c| c.path).collect())
    }

    #[test]
    fn chooses_by_quant_file_or_default() {
        let list = entries(&[
            "README.md",
            "m-Q4_K_M.gguf",
            "m-Q4_K_S.gguf",
            "m.Q8_0.gguf",
            "mmproj-m-f16.gguf",
            "sub/m-IQ2_XS.gguf",
        ]);
        let one = |sel| pick(sel, &list).unwrap().remove(0);
        assert_eq!(one(HfSelector::Quant("q4_k_m".into())), "m-Q4_K_M.gguf");
        assert_eq!(one(HfSelector::Quant("Q8_0".into())), "m.Q8_0.gguf");
        assert_eq!(one(HfSelector::Quant("IQ2_XS".into())), "sub/m-IQ2_XS.gguf");
        assert_eq!(one(HfSelector::Default), "m-Q4_K_M.gguf");
        assert_eq!(one(HfSelector::File("m.Q8_0.gguf".into())), "m.Q8_0.gguf");
        // `Q4_K` is a prefix of two names but a whole word in neither.
        match pick(HfSelector::Quant("Q4_K".into()), &list) {
            Err(crate::Error::Model(crate::models::error::Error::NoMatchingFile {
                available,
                ..
            })) => {
                assert_eq!(available.len(), 4, "mmproj is not offered: {available:?}");
            }
            other => panic!("{other:?}"),
        }
        let only = entries(&["only.gguf", "mmproj.gguf"]);
        assert_eq!(pick(HfSelector::Default, &only).unwrap(), ["only.gguf"]);
    }

    #[test]
    fn default_falls_back_along_the_preference_order() {
        let table: &[(&[&str], &str)] = &[
            (
                &["m-Q8_0.gguf", "m-Q5_K_M.gguf", "m-Q2_K.gguf"],
                "m-Q5_K_M.gguf",
            ),
            (&["m-Q8_0.gguf", "m-Q2_K.gguf"], "m-Q8_0.gguf"),
            (&["m-Q2_K.gguf", "m-IQ2_XS.gguf"], "m-Q2_K.gguf"),
            (&["m-IQ4_XS.gguf", "m-Q4_0.gguf"], "m-IQ4_XS.gguf"),
        ];
        for (names, want) in table {
            assert_eq!(
                pick(HfSelector::Default, &entries(names)).unwrap(),
                [*want],
                "{names:?}"
            );
        }
        // A cache that lacks Q4_K_M is not trusted to hold the hub's pick.
        let r = select(
            &src(HfSelector::Default),
            &entries(&["m-Q8_0.gguf"]),
            false,
            DefaultRule::FirstOnly,
        );
        assert!(
            matches!(
                r,
                Err(crate::Error::Model(
                    crate::models::error::Error::NoMatchingFile { .. }
                ))
            ),
            "{r:?}"
        );
    }

    #[test]
    fn split_models_are_one_model_in_part_order() {
        let list = entries(&[
            "big/m-Q4_K_M-00003-of-00003.gguf",
            "big/m-Q4_K_M-00001-of-00003.gguf",
            "big/m-Q4_K_M-00002-of-00003.gguf",
            "m-Q8_0-00001-of-00002.gguf",
        ]);
        let parts = vec![
            "big/m-Q4_K_M-00001-of-00003.gguf",
            "big/m-Q4_K_M-00002-of-00003.gguf",
            "big/m-Q4_K_M-00003-of-00003.gguf",
        ];
        assert_eq!(
            pick(HfSelector::Quant("Q4_K_M".into()), &list).unwrap(),
            parts
        );
        assert_eq!(pick(HfSelector::Default, &list).unwrap(), parts);
        assert_eq!(
            pick(
                HfSelector::File("big/m-Q4_K_M-00002-of-00003.gguf".into()),
                &list
            )
            .unwrap(),
            parts
        );
        match pick(HfSelector::Quant("Q8_0".into()), &list) {
            Err(crate::Error::Model(crate::models::error::Error::SplitIncomplete {
                missing,
                ..
            })) => {
                assert_eq!(missing, ["m-Q8_0-00002-of-00002.gguf"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ambiguous_quant_is_an_error_naming_the_candidates() {
        let list = entries(&["a-Q4_0.gguf", "b-Q4_0.gguf"]);
        let msg = pick(HfSelector::Quant("Q4_0".into()), &list)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("a-Q4_0.gguf") && msg.contains("ambiguous"),
            "{msg}"
        );
    }

    #[test]
    fn split_names_parse_strictly() {
        assert_eq!(split_part("a-00001-of-00003.gguf"), Some(("a", 1, 3)));
        assert_eq!(split_part("d/a-00003-of-00003.GGUF"), Some(("d/a", 3, 3)));
        for bad in [
            "a-00004-of-00003.gguf",
            "a-00000-of-00003.gguf",
            "a-0001-of-00003.gguf",
            "-00001-of-00003.gguf",
            "a-00001-of-00003.bin",
            "a.gguf",
            "é-00001-of-00003.gguf".get(1..).unwrap_or("x"),
            "xé00001-of-00003.gguf",
        ] {
            assert_eq!(split_part(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_projector_next_to_the_model_is_taken() {
        let list = entries(&[
            "m-Q4_K_M.gguf",
            "mmproj-m-Q8_0.gguf",
            "mmproj-m-F16.gguf",
            "other/mmproj-x-f32.gguf",
            "other/x-Q4_K_M.gguf",
        ]);
        let mm = |sel| {
            select(&src(sel), &list, true, DefaultRule::Preference)
                .unwrap()
                .mmproj
                .map(|c| c.path)
        };
        assert_eq!(
            mm(HfSelector::File("m-Q4_K_M.gguf".into())).as_deref(),
            Some("mmproj-m-F16.gguf")
        );
        assert_eq!(
            mm(HfSelector::File("other/x-Q4_K_M.gguf".into())).as_deref(),
            Some("other/mmproj-x-f32.gguf")
        );
        let off = select(
            &src(HfSelector::File("m-Q4_K_M.gguf".into())),
            &list,
            false,
            DefaultRule::Preference,
        )
        .unwrap();
        assert_eq!(off.mmproj, None);
        let none = select(
            &src(HfSelector::Default),
            &entries(&["m.gguf"]),
            true,
            DefaultRule::Preference,
        )
        .unwrap();
        assert_eq!(none.mmproj, None);
    }

    proptest::proptest! {
        #[test]
        fn split_names_never_panic_and_round_trip(name in "\\PC{0,40}(-[0-9]{5}-of-[0-9]{5})?(\\.gguf)?") {
            if let Some((prefix, n, m)) = split_part(&name) {
                proptest::prop_assert!(n >= 1 && n <= m);
                proptest::prop_assert_eq!(part_name(prefix, n, m).to_ascii_lowercase(), name.to_ascii_lowercase());
            }
        }

        #[test]
        fn any_listing_selects_or_explains(
            names in proptest::collection::vec("(mmproj-)?[a-zé/]{0,6}(-Q4_K_M|-Q8_0)?(-0000[0-3]-of-0000[1-3])?\\.gguf", 0..12),
            mmproj in proptest::bool::ANY,
        ) {
            let list = entries(&names.iter().map(String::as_str).collect::<Vec<_>>());
            for sel in [
                HfSelector::Default,
                HfSelector::Quant("Q4_K_M".into()),
                HfSelector::File(names.first().cloned().unwrap_or_default()),
            ] {
                for rule in [DefaultRule::Preference, DefaultRule::FirstOnly] {
                    if let Ok(s) = select(&src(sel.clone()), &list, mmproj, rule) {
                        // A model is never a projector, and its parts are all listed.
                        proptest::prop_assert!(!s.parts.is_empty());
                        proptest::prop_assert!(s.parts.iter().all(|p| !is_mmproj(&p.path) && names.contains(&p.path)));
                    }
                }
            }
        }
    }
}
