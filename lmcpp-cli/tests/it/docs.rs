//! The README and `docs/` stay an entry a newcomer can use and a reference that is true:
//! the README is short, every relative link and heading anchor between the pages resolves,
//! every page is compiled as a doc test (`lib.rs`), the config example and key table match
//! what `lmcpp serve --config` reads, and the numbers the pages quote are the code's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lmcpp::server::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEP_ALIVE, DEFAULT_LOAD_TIMEOUT, DEFAULT_PROXY_MAX_BODY,
    DEFAULT_PROXY_MAX_HEADER, DEFAULT_PROXY_MAX_HEADERS, DEFAULT_QUICK_TIMEOUT,
    DEFAULT_READ_STALL_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RPC_PORT,
    DEFAULT_STREAM_IDLE_TIMEOUT, DEFAULT_WRITE_STALL_TIMEOUT, MAX_ALIAS_LEN,
};

/// What "a short entry" means: the README holds what lmcpp is, the two commands, the
/// platform table, a quick start, a CLI tour and links; everything else is in `docs/`.
const README_MAX_BYTES: usize = 10 * 1024;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The pages in `docs/`, sorted.
fn docs_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "no pages in docs/");
    pages
}

/// Every Markdown file whose links are checked: the top-level ones and `docs/`.
fn all_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "SECURITY.md"]
        .iter()
        .map(|name| root().join(name))
        .collect();
    pages.extend(docs_pages());
    pages
}

/// The page's text with fenced code blocks blanked (their lines kept, so line numbers
/// stay right): links and headings inside them are not Markdown.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return "";
            }
            if fenced { "" } else { line }
        })
        .collect()
}

/// The anchors GitHub gives the page's headings: lower case, letters, digits, `-` and `_`
/// kept, spaces made `-`, everything else dropped; a repeated anchor gets `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(text) {
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let base: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of the page's inline links `[text](target)`, with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in prose(text).into_iter().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else {
                break;
            };
            found.push((i + 1, after[..end].trim().to_owned()));
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn the_readme_stays_a_short_entry() {
    let readme = read(&root().join("README.md"));
    assert!(
        readme.len() < README_MAX_BYTES,
        "README.md is {} bytes, over {README_MAX_BYTES}: move the detail to a page of docs/ \
         and link it",
        readme.len()
    );
    for heading in [
        "## On a fresh machine: two commands",
        "## Platforms",
        "## Library quick start",
        "## CLI tour",
    ] {
        assert!(
            readme.lines().any(|l| l == heading),
            "README.md lost {heading:?}"
        );
    }
    for page in docs_pages() {
        let name = page.file_name().unwrap().to_str().unwrap();
        assert!(
            readme.contains(&format!("(docs/{name})")),
            "README.md does not link docs/{name}"
        );
    }
}

#[test]
fn every_relative_link_and_anchor_between_the_pages_resolves() {
    let mut broken = Vec::new();
    for page in all_pages() {
        let text = read(&page);
        let dir = page.parent().unwrap();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let shown = format!("{}:{line}: {target}", page.display());
            let linked = if path.is_empty() {
                page.clone()
            } else {
                dir.join(path)
            };
            if !linked.exists() {
                broken.push(format!("{shown}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                let is_md = linked.extension().is_some_and(|x| x == "md");
                if !is_md || !anchors(&read(&linked)).contains(anchor) {
                    broken.push(format!("{shown}: no heading with that anchor"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_checker_sees_headings_and_links_as_github_does() {
    let text = "# lmcpp\n## On a fresh machine: two commands\n## llama.cpp versions\n\
                ## Developer tasks (`cargo xtask`)\n## Notes\n## Notes\n```sh\n# not a heading\n\
                [not](a-link.md)\n```\nSee [a](b.md#c) and [d](#e).\n";
    let expected: BTreeSet<String> = [
        "lmcpp",
        "on-a-fresh-machine-two-commands",
        "llamacpp-versions",
        "developer-tasks-cargo-xtask",
        "notes",
        "notes-1",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(anchors(text), expected);
    assert_eq!(
        links(text),
        vec![(11, "b.md#c".to_owned()), (11, "#e".to_owned())]
    );
}

#[test]
fn every_docs_page_is_compiled_as_a_doc_test() {
    let lib = read(&root().join("lmcpp-cli/src/lib.rs"));
    let missing: Vec<String> = docs_pages()
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .filter(|name| !lib.contains(&format!("include_str!(\"../../docs/{name}\")")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/{missing:?} not among the doc tests: add a #[doc = include_str!(..)] item to \
         `mod docs` in lmcpp-cli/src/lib.rs"
    );
}

/// `lmcpp serve --config` of this text, run in `dir`, with no API key in the environment.
fn serve_config(dir: &Path, text: &str) -> (Option<i32>, String) {
    let file = dir.join("lmcpp.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lmcpp"))
        .arg("--home")
        .arg(dir.join("home"))
        .arg("--runtime-dir")
        .arg(dir.join("run"))
        .arg("--quiet")
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .env_remove("LMCPP_HOME")
        .env_remove("LMCPP_SERVER_BIN")
        .env_remove("LLAMA_API_KEY")
        .env_remove("LMCPP_PROXY_KEY")
        .env("HF_HUB_CACHE", dir.join("hub"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The one ```toml block of the page's "## The configuration file" section.
fn documented_config(page: &str) -> String {
    let section = page
        .split("\n## The configuration file\n")
        .nth(1)
        .expect("docs/serving.md has no \"## The configuration file\" section");
    let section = section.split("\n## ").next().unwrap();
    let block = section
        .split("```toml\n")
        .nth(1)
        .expect("the configuration section has no ```toml example");
    block.split("\n```").next().unwrap().to_owned()
}

#[test]
fn the_documented_config_example_is_read_as_written() {
    let page = read(&root().join("docs/serving.md"));
    let example = documented_config(&page);
    // The example names a key variable; with it unset, `serve` stops at the key, which it
    // only reaches after the whole file has been read and checked, before any model or
    // toolchain is fetched.
    assert!(
        example.contains("api_key_env = \"LMCPP_PROXY_KEY\""),
        "the example must keep `api_key_env = \"LMCPP_PROXY_KEY\"`, which stops this test \
         before anything starts:\n{example}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = serve_config(dir.path(), &example);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("api_key_env names LMCPP_PROXY_KEY, which is not set"),
        "the documented config was not read as written: {err}"
    );
}

/// The keys serde lists as expected after an unknown one, from `lmcpp serve`'s error.
fn expected_keys(err: &str) -> Vec<String> {
    let listed = err
        .split("expected one of")
        .nth(1)
        .unwrap_or_else(|| panic!("no key list in: {err}"));
    let listed = listed.lines().next().unwrap();
    listed
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_config_reference_documents_every_key_serve_reads() {
    let page = read(&root().join("docs/serving.md"));
    let table: Vec<&str> = page.lines().filter(|l| l.starts_with("| `")).collect();
    let dir = tempfile::tempdir().unwrap();
    let (_, top) = serve_config(
        dir.path(),
        "not_a_key = 1\n[[models]]\nalias = \"a\"\nmodel = \"demo\"\n",
    );
    let (_, model) = serve_config(
        dir.path(),
        "[[models]]\nalias = \"a\"\nmodel = \"demo\"\nnot_a_key = 1\n",
    );
    for (place, err) in [("top", top), ("model", model)] {
        let keys = expected_keys(&err);
        assert!(keys.len() > 3, "{place}: {keys:?} from {err}");
        for key in keys {
            // A row names the key in its first cell and the place in its second.
            let row = table.iter().find(|row| {
                let cells: Vec<&str> = row.split(" | ").collect();
                cells[0].contains(&format!("`{key}`"))
                    && cells.get(1).is_some_and(|c| c.contains(place))
            });
            assert!(
                row.is_some(),
                "config key `{key}` ({place}) is not in the reference table of docs/serving.md"
            );
        }
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// The page's text with every run of whitespace made one space.
fn flat(name: &str) -> String {
    read(&root().join(name))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_numbers_the_pages_quote_are_the_codes() {
    let client_timeouts = format!(
        "connect {} s, a request {} min, {} s for requests that never generate, {} min of \
         silence in a stream",
        secs(DEFAULT_CONNECT_TIMEOUT),
        secs(DEFAULT_REQUEST_TIMEOUT) / 60,
        secs(DEFAULT_QUICK_TIMEOUT),
        secs(DEFAULT_STREAM_IDLE_TIMEOUT) / 60,
    );
    let caps = format!(
        "({} MiB body: 413; {} KiB or {} headers: 431)",
        DEFAULT_PROXY_MAX_BODY >> 20,
        DEFAULT_PROXY_MAX_HEADER >> 10,
        DEFAULT_PROXY_MAX_HEADERS,
    );
    let stalls = format!(
        "one that stops sending a body it has begun for {} s is answered 408 and \
         disconnected, and one that reads none of its answer for {} s is dropped",
        secs(DEFAULT_READ_STALL_TIMEOUT),
        secs(DEFAULT_WRITE_STALL_TIMEOUT),
    );
    let load = format!(
        "| `load_timeout` | top | how long a request waits for its model to load; it then \
         gets a 503 while the start goes on (`\"{}m\"`) |",
        secs(DEFAULT_LOAD_TIMEOUT) / 60
    );
    let keep_alive = format!(
        "| `keep_alive` | top | the keep-alive of models that set none (`\"{}m\"`) |",
        secs(DEFAULT_KEEP_ALIVE) / 60
    );
    let alias = format!("1 to {MAX_ALIAS_LEN} printable ASCII characters");
    let rpc_port = format!("127.0.0.1:{DEFAULT_RPC_PORT}");
    let table: [(&str, &str); 10] = [
        ("docs/serving.md", &client_timeouts),
        ("docs/serving.md", &caps),
        ("docs/security.md", &caps),
        ("docs/serving.md", &stalls),
        ("docs/security.md", &stalls),
        ("docs/serving.md", &load),
        ("docs/serving.md", &keep_alive),
        ("docs/serving.md", &alias),
        ("README.md", &rpc_port),
        ("docs/rpc.md", &format!(":{DEFAULT_RPC_PORT}")),
    ];
    for (page, quoted) in table {
        let quoted = quoted.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat(page).contains(&quoted),
            "{page} no longer says {quoted:?}: update it to the code's value"
        );
    }
}
