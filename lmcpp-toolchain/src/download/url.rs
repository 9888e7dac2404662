//! URL text helpers shared by the downloader and its callers: percent-decoding and the one
//! rule for naming a file after a URL.

/// The file name a URL (or a plain path) names: its last path segment without query or
/// fragment, made safe with [`safe_file_name`]; `None` when there is no such segment (a
/// bare host, a trailing slash only, or a name with a `:`).
pub fn url_file_name(url: &str) -> Option<String> {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    let path = match no_query.split_once("://") {
        // Skip the host: only path segments name a file.
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, path)| path),
        None => no_query,
    };
    let name = path
        .trim_end_matches(['/', '\\'])
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("");
    if name.is_empty() || name.contains(':') {
        return None;
    }
    let safe = safe_file_name(name);
    (!safe.is_empty()).then_some(safe)
}

/// A file name that is safe on every platform and cannot escape its directory: letters,
/// digits and `._-+` are kept, anything else becomes `_`, leading dots are dropped. Empty
/// when nothing is left.
pub fn safe_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    cleaned.trim_start_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn file_names_from_urls_and_paths() {
        let cases = [
            ("https://h/a/b/m.Q4.gguf?download=1", Some("m.Q4.gguf")),
            ("https://h/a/b.tar.gz#frag", Some("b.tar.gz")),
            ("https://h/", None),
            ("https://h", None),
            ("https://h/x/..%2F..gguf", Some("_2F..gguf")),
            ("https://h/x/a:b", None),
            ("/tmp/x.zip", Some("x.zip")),
            ("C:\\dl\\y.zip", Some("y.zip")),
            ("file:///srv/m%20x.gguf", Some("m_20x.gguf")),
            ("https://h/..", None),
        ];
        for (url, want) in cases {
            assert_eq!(url_file_name(url).as_deref(), want, "{url}");
        }
        assert_eq!(safe_file_name("../etc/passwd"), "_etc_passwd");
    }

    proptest! {
        #[test]
        fn a_url_file_name_never_leaves_its_directory(url in "\\PC{0,60}") {
            if let Some(name) = url_file_name(&url) {
                prop_assert!(!name.is_empty());
                prop_assert!(!name.starts_with('.'));
                prop_assert!(!name.contains(['/', '\\', ':', '\0']));
            }
        }
    }
}
