//! `cargo xtask codegen [--check] [--capture <llama-server>]`: generates
//! `lmcpp-types/src/args/generated.rs` (one typed `ServerArgs` field per flag) from the
//! committed `llama-server --help` text in `lmcpp-types/llama-server-help.txt`.
//!
//! `--capture <path>` first refreshes the committed help text from a binary of the
//! pinned version; `--check` fails when the generated file is stale.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::workspace_root;
use anyhow::{Context, Result, bail};

const HELP: &str = "lmcpp-types/llama-server-help.txt";
const OUT: &str = "lmcpp-types/src/args/generated.rs";

/// Flags whose value is a secret: never rendered onto argv, passed through the
/// environment variable the server reads instead.
const SECRETS: &[&str] = &["--api-key", "--hf-token"];

/// Field-name overrides where the first long spelling is not the one people use.
const RENAMES: &[(&str, &str)] = &[
    ("embedding", "embeddings"),
    ("rerank", "reranking"),
    ("predict", "n_predict"),
];

/// Numeric flags whose help text shows no decimal default but which take floats.
const FLOATS: &[&str] = &[
    "--rope-scale",
    "--rope-freq-base",
    "--rope-freq-scale",
    "--adaptive-target",
    "--adaptive-decay",
    "--spec-draft-p-min",
    "--spec-draft-p-split",
    "--defrag-thold",
    "--slot-prompt-similarity",
];

/// Numeric flags whose help text shows a decimal but which take integers.
const INTS: &[&str] = &["--mirostat"];

/// Flags that take a comma-separated list but stay a single string for callers
/// (`host` is usually one address; the server engineer sets it directly).
const NOT_LISTS: &[&str] = &["--host"];

pub(crate) fn run(args: &[String]) -> Result<()> {
    let root = workspace_root();
    let mut check = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--check" => check = true,
            "--capture" => {
                let bin = it
                    .next()
                    .context("--capture needs the path of a llama-server binary")?;
                capture(Path::new(bin), &root.join(HELP))?;
            }
            other => {
                bail!("unknown codegen option `{other}`; try --check or --capture <llama-server>")
            }
        }
    }
    let help = std::fs::read_to_string(root.join(HELP)).with_context(|| {
        format!("reading {HELP}; capture it with `cargo xtask codegen --capture <llama-server>`")
    })?;
    let opts = parse_help(&help)?;
    let code = rustfmt(&render(&opts))?;
    let out = root.join(OUT);
    let current = std::fs::read_to_string(&out).unwrap_or_default();
    if check {
        if current != code {
            bail!("{OUT} is stale; run `cargo xtask codegen` and commit the result");
        }
        return Ok(());
    }
    if current != code {
        std::fs::write(&out, code).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

fn capture(bin: &Path, dest: &Path) -> Result<()> {
    let out = Command::new(bin)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --help", bin.display()))?;
    if !out.status.success() {
        bail!("{} --help exited with {}", bin.display(), out.status);
    }
    std::fs::write(dest, &out.stdout).with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

fn rustfmt(code: &str) -> Result<String> {
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running rustfmt (install it with `rustup component add rustfmt`)")?;
    child
        .stdin
        .take()
        .context("rustfmt stdin")?
        .write_all(code.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("rustfmt rejected the generated code");
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// One option block of the help text (the parser is shared with the runtime flag check).
pub(crate) type Opt = lmcpp_types::args::help::HelpOption;

/// Parses `llama-server --help` with the shared parser; a text without options is an error.
pub(crate) fn parse_help(text: &str) -> Result<Vec<Opt>> {
    let opts = lmcpp_types::args::help::parse_help(text);
    if opts.is_empty() {
        bail!("the help text lists no options");
    }
    Ok(opts)
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// `--flag`, rendered when true.
    Switch,
    /// `--flag` / `--no-flag`, rendered when set.
    Toggle { on: String, off: String },
    /// A value; `ty` is the Rust type inside `Option`.
    Value { ty: &'static str },
    /// A comma-separated list; `ty` is the element type.
    List { ty: &'static str },
    /// A secret value passed through `env`.
    Secret { env: String },
}

pub(crate) struct Field {
    pub(crate) name: String,
    pub(crate) flag: String,
    pub(crate) kind: Kind,
    pub(crate) opt: Opt,
}

fn long_flags(o: &Opt) -> impl Iterator<Item = &String> {
    o.flags.iter().filter(|f| f.starts_with("--"))
}

fn classify(o: &Opt) -> Kind {
    let primary = long_flags(o).next().unwrap_or(&o.flags[0]).clone();
    if SECRETS.contains(&primary.as_str()) {
        let env = o.env.clone().unwrap_or_else(|| {
            if primary == "--hf-token" {
                "HF_TOKEN".to_owned()
            } else {
                "LLAMA_API_KEY".to_owned()
            }
        });
        return Kind::Secret { env };
    }
    let Some(hint) = &o.hint else {
        let off = o.flags.iter().find(|f| f.starts_with("--no-"));
        let on = o
            .flags
            .iter()
            .find(|f| f.starts_with("--") && !f.starts_with("--no-"));
        return match (on, off) {
            (Some(on), Some(off)) => Kind::Toggle {
                on: on.clone(),
                off: off.clone(),
            },
            _ => Kind::Switch,
        };
    };
    let pathy = ["FNAME", "PATH", "FILE", "DIR"]
        .iter()
        .any(|p| hint.contains(p));
    let listy =
        (hint.contains(",...") || hint.contains(",..") || o.desc.contains("comma-separated"))
            && !NOT_LISTS.contains(&primary.as_str());
    if listy {
        let ty = if pathy && !hint.contains(':') {
            "PathBuf"
        } else {
            "String"
        };
        return Kind::List { ty };
    }
    if hint == "PORT" {
        return Kind::Value { ty: "u16" };
    }
    if FLOATS.contains(&primary.as_str()) {
        return Kind::Value { ty: "f64" };
    }
    if INTS.contains(&primary.as_str()) {
        return Kind::Value { ty: "i64" };
    }
    let numeric = matches!(
        hint.as_str(),
        "N" | "SEED" | "<0|1>" | "<0...100>" | "SECONDS" | "INDEX" | "L" | "P"
    );
    if numeric {
        let float = has_decimal(&o.desc) || hint == "P";
        return Kind::Value {
            ty: if float { "f64" } else { "i64" },
        };
    }
    if pathy {
        return Kind::Value { ty: "PathBuf" };
    }
    Kind::Value { ty: "String" }
}

/// `true` when the description shows a decimal number such as `0.80` or `-1.00`.
fn has_decimal(desc: &str) -> bool {
    let b = desc.as_bytes();
    (1..b.len().saturating_sub(1))
        .any(|i| b[i] == b'.' && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit())
}

const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

pub(crate) fn fields(opts: &[Opt]) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    for o in opts {
        let kind = classify(o);
        let flag = match &kind {
            Kind::Toggle { on, .. } => on.clone(),
            _ => long_flags(o).next().unwrap_or(&o.flags[0]).clone(),
        };
        let mut name = flag
            .trim_start_matches('-')
            .replace(['-', '.'], "_")
            .to_lowercase();
        if let Some((_, to)) = RENAMES.iter().find(|(from, _)| *from == name) {
            name = (*to).to_owned();
        }
        if KEYWORDS.contains(&name.as_str()) {
            name.push('_');
        }
        while out.iter().any(|f| f.name == name) || name == "extra" {
            name.push('_');
        }
        out.push(Field {
            name,
            flag,
            kind,
            opt: o.clone(),
        });
    }
    out
}

fn doc_escape(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('[', "\\[")
        .replace(']', "\\]")
        .replace('<', "\\<")
        .replace('>', "\\>");
    // Bare URLs become autolinks so rustdoc renders them (and does not warn).
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped.as_str();
    while let Some(i) = rest.find("https://").or_else(|| rest.find("http://")) {
        out.push_str(&rest[..i]);
        let url_len = rest[i..]
            .find(|c: char| c.is_whitespace() || c == ')' || c == '\\')
            .unwrap_or(rest.len() - i);
        out.push('<');
        out.push_str(&rest[i..i + url_len]);
        out.push('>');
        rest = &rest[i + url_len..];
    }
    out.push_str(rest);
    out
}

fn render(opts: &[Opt]) -> String {
    let fields = fields(opts);
    let mut s = String::new();
    render_struct(&mut s, &fields);
    render_debug(&mut s, &fields);
    render_flags_fn(&mut s, &fields);
    render_secret_env(&mut s, &fields);
    render_every_field_set(&mut s, &fields);
    render_flag_table(&mut s, &fields);
    s
}

/// The file header and `ServerArgs`: one documented field per flag.
fn render_struct(s: &mut String, fields: &[Field]) {
    let _ = writeln!(
        *s,
        "//! Generated by `cargo xtask codegen` from `lmcpp-types/llama-server-help.txt`; do not edit.\n\n\
         use std::path::PathBuf;\n\n\
         use super::FlagInfo;\n"
    );
    let _ = writeln!(
        *s,
        "/// Typed command line of `llama-server`: one field per flag of the pinned version's \
         `--help` ({} flags). Unset fields are not rendered, so the server's defaults apply.\n\
         ///\n/// Render with [`ServerArgs::to_argv`]; secrets (`api_key`, `hf_token`) are never \
         rendered and travel in [`ServerArgs::secret_env`] instead. `Debug` redacts them.\n\
         #[derive(Clone, PartialEq, Default)]\npub struct ServerArgs {{",
        fields.len()
    );
    for f in fields {
        let mut doc = String::new();
        let aliases = f.opt.flags.join("`, `");
        let hint = f
            .opt
            .hint
            .as_deref()
            .map(|h| format!(" `{h}`"))
            .unwrap_or_default();
        let _ = write!(doc, "`{aliases}`{hint}: {}", doc_escape(&f.opt.desc));
        if let Some(env) = &f.opt.env {
            let _ = write!(doc, " (env `{env}`)");
        }
        if let Kind::List { .. } = f.kind {
            doc.push_str(" Rendered comma-separated.");
        }
        if let Kind::Secret { env } = &f.kind {
            let _ = write!(
                doc,
                " Secret: never rendered onto argv; passed as `{env}` by `secret_env`."
            );
        }
        let ty = match &f.kind {
            Kind::Switch => "bool".to_owned(),
            Kind::Toggle { .. } => "Option<bool>".to_owned(),
            Kind::Value { ty } => format!("Option<{ty}>"),
            Kind::List { ty } => format!("Vec<{ty}>"),
            Kind::Secret { .. } => "Option<String>".to_owned(),
        };
        let _ = writeln!(*s, "    #[doc = {doc:?}]\n    pub {}: {ty},", f.name);
    }
    let _ = writeln!(
        *s,
        "    /// Raw arguments appended after the typed flags, for flags newer than this version.\n    \
         pub extra: Vec<String>,\n}}\n"
    );
}

/// `Debug` for `ServerArgs`, with the secrets redacted.
fn render_debug(s: &mut String, fields: &[Field]) {
    // Debug that redacts secrets.
    let _ = writeln!(
        *s,
        "impl std::fmt::Debug for ServerArgs {{\n    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {{\n        let mut d = f.debug_struct(\"ServerArgs\");"
    );
    for f in fields {
        match f.kind {
            Kind::Secret { .. } => {
                let _ = writeln!(
                    s,
                    "        if self.{0}.is_some() {{ d.field(\"{0}\", &\"<redacted>\"); }}",
                    f.name
                );
            }
            Kind::Switch => {
                let _ = writeln!(
                    s,
                    "        if self.{0} {{ d.field(\"{0}\", &true); }}",
                    f.name
                );
            }
            Kind::List { .. } => {
                let _ = writeln!(
                    s,
                    "        if !self.{0}.is_empty() {{ d.field(\"{0}\", &self.{0}); }}",
                    f.name
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "        if let Some(v) = &self.{0} {{ d.field(\"{0}\", v); }}",
                    f.name
                );
            }
        }
    }
    let _ = writeln!(
        *s,
        "        if !self.extra.is_empty() {{ d.field(\"extra\", &self.extra); }}\n        d.finish_non_exhaustive()\n    }}\n}}\n"
    );
}

/// `render_flags`: each set field onto argv, in help order.
fn render_flags_fn(s: &mut String, fields: &[Field]) {
    // Rendering.
    let _ = writeln!(
        *s,
        "impl ServerArgs {{\n    /// Appends the set flags to `out`, in help order, without validation or secrets.\n    \
         pub(crate) fn render_flags(&self, out: &mut Vec<String>) {{"
    );
    for f in fields {
        let n = &f.name;
        let flag = &f.flag;
        match &f.kind {
            Kind::Switch => {
                let _ = writeln!(
                    s,
                    "        if self.{n} {{ out.push({flag:?}.to_owned()); }}"
                );
            }
            Kind::Toggle { on, off } => {
                let _ = writeln!(
                    s,
                    "        if let Some(v) = self.{n} {{ out.push(if v {{ {on:?} }} else {{ {off:?} }}.to_owned()); }}"
                );
            }
            Kind::Value { ty } => {
                let conv = match *ty {
                    "String" => "v.clone()",
                    "PathBuf" => "v.to_string_lossy().into_owned()",
                    _ => "v.to_string()",
                };
                if f.opt.hint.as_deref().is_some_and(|h| h.contains(' ')) {
                    let _ = writeln!(
                        s,
                        "        if let Some(v) = &self.{n} {{ out.push({flag:?}.to_owned()); out.extend(v.split_whitespace().map(str::to_owned)); }}"
                    );
                } else {
                    let _ = writeln!(
                        s,
                        "        if let Some(v) = &self.{n} {{ out.push({flag:?}.to_owned()); out.push({conv}); }}"
                    );
                }
            }
            Kind::List { ty } => {
                let joined = if *ty == "PathBuf" {
                    format!(
                        "self.{n}.iter().map(|v| v.to_string_lossy()).collect::<Vec<_>>().join(\",\")"
                    )
                } else {
                    format!("self.{n}.join(\",\")")
                };
                let _ = writeln!(
                    s,
                    "        if !self.{n}.is_empty() {{ out.push({flag:?}.to_owned()); out.push({joined}); }}"
                );
            }
            Kind::Secret { .. } => {}
        }
    }
    let _ = writeln!(*s, "    }}\n");
}

/// `secret_env_generated`: the secret flags that are set, as environment variables.
fn render_secret_env(s: &mut String, fields: &[Field]) {
    let _ = writeln!(
        *s,
        "    /// The environment variables carrying the secret flags that are set.\n    \
         pub(crate) fn secret_env_generated(&self) -> Vec<(String, String)> {{\n        let mut env = Vec::new();"
    );
    for f in fields {
        if let Kind::Secret { env } = &f.kind {
            let _ = writeln!(
                s,
                "        if let Some(v) = &self.{} {{ env.push(({env:?}.to_owned(), v.clone())); }}",
                f.name
            );
        }
    }
    let _ = writeln!(*s, "        env\n    }}\n}}\n");
}

/// `every_field_set`: a sample value in every field, for the unit test that checks each field renders its own flag.
fn render_every_field_set(s: &mut String, fields: &[Field]) {
    // Every field set, for the unit test that checks each field renders its own flag.
    let _ = writeln!(
        *s,
        "/// A `ServerArgs` with every field set to a sample value (tests only).\n\
         #[cfg(test)]\npub(crate) fn every_field_set() -> ServerArgs {{\n    ServerArgs {{"
    );
    for f in fields {
        let v = match &f.kind {
            Kind::Switch => "true".to_owned(),
            Kind::Toggle { .. } => "Some(false)".to_owned(),
            Kind::Secret { .. } => "Some(\"secret\".to_owned())".to_owned(),
            Kind::Value { ty } => match *ty {
                "i64" => "Some(1)".to_owned(),
                "f64" => "Some(0.5)".to_owned(),
                "u16" => "Some(8080)".to_owned(),
                "PathBuf" => "Some(PathBuf::from(\"/x\"))".to_owned(),
                _ => "Some(\"x y\".to_owned())".to_owned(),
            },
            Kind::List { ty } => {
                if *ty == "PathBuf" {
                    "vec![PathBuf::from(\"/a\"), PathBuf::from(\"/b\")]".to_owned()
                } else {
                    "vec![\"a\".to_owned(), \"b\".to_owned()]".to_owned()
                }
            }
        };
        let _ = writeln!(*s, "        {}: {v},", f.name);
    }
    let _ = writeln!(*s, "        extra: Vec::new(),\n    }}\n}}\n");
}

/// The `FLAGS` table.
fn render_flag_table(s: &mut String, fields: &[Field]) {
    // Flag table.
    let _ = writeln!(
        *s,
        "/// Every flag of the pinned `llama-server --help`, in help order.\npub const FLAGS: &[FlagInfo] = &["
    );
    for f in fields {
        let flags: Vec<String> = f.opt.flags.iter().map(|x| format!("{x:?}")).collect();
        let _ = writeln!(
            s,
            "    FlagInfo {{ field: {:?}, flags: &[{}], value: {:?}, env: {:?}, section: {:?}, secret: {} }},",
            f.name,
            flags.join(", "),
            f.opt.hint,
            f.opt.env,
            f.opt.section,
            matches!(f.kind, Kind::Secret { .. })
        );
    }
    let _ = writeln!(*s, "];");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_hints_and_env() {
        let text = "----- common params -----\n\n\
            -h,    --help, --usage                  print usage and exit\n\
            -c,    --ctx-size N                     size of the prompt context (default: 0)\n\
            \x20                                       (env: LLAMA_ARG_CTX_SIZE)\n\
            --control-vector-layer-range START END\n\
            \x20                                       layer range\n\
            --perf, --no-perf                       timings (default: false)\n";
        let opts = parse_help(text).unwrap_or_default();
        assert_eq!(opts.len(), 4);
        assert_eq!(opts[0].flags, ["-h", "--help", "--usage"]);
        assert_eq!(opts[1].hint.as_deref(), Some("N"));
        assert_eq!(opts[1].env.as_deref(), Some("LLAMA_ARG_CTX_SIZE"));
        assert_eq!(opts[2].hint.as_deref(), Some("START END"));
        assert_eq!(opts[2].desc, "layer range");
        let f = fields(&opts);
        assert_eq!(f[1].kind, Kind::Value { ty: "i64" });
        assert!(matches!(f[3].kind, Kind::Toggle { .. }));
    }
}
