//! What a multi-model `lmcpp serve` runs: the TOML config file (`--config lmcpp.toml`) or
//! the repeated `--model [alias=]ref`, read into one [`ServePlan`]. Pure parsing and checks, no
//! I/O beyond the text handed in, so every refusal is table-tested.
//!
//! A bad file is refused with its path, the line (from the TOML parser, or from the span
//! of the offending value) and what to do; unknown keys are refused, not ignored, so a
//! misspelt `keep_alive` never silently means the default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lmcpp::server::{DEFAULT_KEEP_ALIVE, DEFAULT_LOAD_TIMEOUT, DEFAULT_MAX_PASS_OVER};

/// How long a model server may take to become ready before its start fails, unless the
/// config says otherwise: long, so that a slow load (a large model from a slow disk) is
/// not killed and retried for ever, as a start-up limit equal to how long a request waits
/// would do; a request gives up after `load_timeout` while the start goes on.
pub(crate) const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60 * 60);
use serde::Deserialize;
use toml::Spanned;

use crate::exit::BadInput;

/// Where the config reference is.
const SEE: &str = "see \"The configuration file\" in docs/serving.md for every key";

/// Everything a multi-model serve needs to know, from a file or from the command line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServePlan {
    /// The budget the running models' estimates must fit (`None`: the default share of RAM).
    pub(crate) memory_budget: Option<Budget>,
    /// HTTP on loopback instead of a Unix socket.
    pub(crate) http: bool,
    /// The port for `http` (`None`: a free one).
    pub(crate) port: Option<u16>,
    /// How long a request waits for its model to load (a 503 then; the start goes on).
    pub(crate) load_timeout: Duration,
    /// How long a model server may take to become ready before its start fails, for
    /// the models that set none.
    pub(crate) start_timeout: Duration,
    /// The environment variable holding the proxy's API key, if the config names one.
    pub(crate) api_key_env: Option<String>,
    /// How long a request may wait for memory held by busy models that keep taking newer
    /// requests (`Duration::ZERO`: first come first served across models).
    pub(crate) max_pass_over: Duration,
    /// The models, in order.
    pub(crate) models: Vec<ModelPlan>,
}

/// One model behind the proxy.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ModelPlan {
    /// The name clients select it by.
    pub(crate) alias: String,
    /// What to load, as written: a path, URL, Hugging Face reference or `demo`.
    pub(crate) reference: String,
    /// That, parsed where it was read (a path relative to the config's folder found there).
    pub(crate) model: lmcpp::ModelRef,
    /// The speculative draft model its server drafts tokens with (`draft`).
    pub(crate) draft: Option<lmcpp::ModelRef>,
    /// `--llama-version` for this model (`None`: the command line's, else the pinned one).
    pub(crate) llama_version: Option<String>,
    /// `--backend` for this model.
    pub(crate) backend: Option<lmcpp::toolchain::Backend>,
    /// A llama-server binary for this model instead of the toolchain's.
    pub(crate) llama_server: Option<PathBuf>,
    /// Extra llama-server arguments.
    pub(crate) args: Vec<String>,
    /// `--ctx-size`.
    pub(crate) ctx_size: Option<u64>,
    /// `--parallel`.
    pub(crate) parallel: Option<u64>,
    /// `--embeddings`.
    pub(crate) embeddings: bool,
    /// `--pooling`.
    pub(crate) pooling: Option<String>,
    /// Idle time before the server stops; `None`: never.
    pub(crate) keep_alive: Option<Duration>,
    /// Never stopped to make room for another model.
    pub(crate) pinned: bool,
    /// The memory to count instead of the estimate from the GGUF metadata.
    pub(crate) memory: Option<u64>,
    /// Its own start-up limit (`None`: the plan's).
    pub(crate) start_timeout: Option<Duration>,
    /// How many requests may wait for it at once (`None`: no bound).
    pub(crate) max_queue: Option<usize>,
    /// Keep its KV cache (slot save and restore) when its server is stopped for being
    /// idle, evicted or unloaded.
    pub(crate) keep_kv_cache: bool,
}

/// A memory budget as written: bytes, or a share of the machine's RAM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Budget {
    /// Exactly this many bytes.
    Bytes(u64),
    /// This percentage (0 < p ≤ 100) of the machine's memory.
    Percent(f64),
}

impl Budget {
    /// The budget in bytes, given the machine's total memory (`None` when unknown, which
    /// makes a percentage an error).
    pub(crate) fn bytes(self, mem_total: Option<u64>) -> Result<u64, String> {
        match self {
            Self::Bytes(b) => Ok(b),
            Self::Percent(p) => mem_total
                .map(|total| (total as f64 * p / 100.0) as u64)
                .ok_or_else(|| {
                    "a percentage budget needs the machine's memory, which the OS does not \
                     say here; give the budget in bytes (e.g. \"12GiB\")"
                        .to_owned()
                }),
        }
    }
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    memory_budget: Option<Spanned<String>>,
    transport: Option<Spanned<String>>,
    port: Option<u16>,
    load_timeout: Option<Spanned<DurationText>>,
    start_timeout: Option<Spanned<DurationText>>,
    api_key_env: Option<Spanned<String>>,
    keep_alive: Option<Spanned<DurationText>>,
    max_pass_over: Option<Spanned<DurationText>>,
    #[serde(default)]
    models: Vec<ModelEntry>,
}

/// One `[[models]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    alias: Spanned<String>,
    model: String,
    llama_version: Option<String>,
    backend: Option<Spanned<String>>,
    llama_server: Option<PathBuf>,
    args: Option<Spanned<Vec<String>>>,
    ctx_size: Option<u64>,
    parallel: Option<u64>,
    embeddings: Option<bool>,
    pooling: Option<String>,
    keep_alive: Option<Spanned<DurationText>>,
    #[serde(default)]
    pinned: bool,
    memory: Option<Spanned<String>>,
    start_timeout: Option<Spanned<DurationText>>,
    max_queue: Option<Spanned<u64>>,
    #[serde(default)]
    keep_kv_cache: bool,
    draft: Option<Spanned<String>>,
}

/// A duration as TOML allows writing it: `"5m"`, `"90s"`, `"1h30m"`, `"0"`, or an integer
/// number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(u64),
    Text(String),
}

impl DurationText {
    fn parse(&self) -> Result<Duration, String> {
        match self {
            Self::Seconds(s) => Ok(Duration::from_secs(*s)),
            Self::Text(t) => parse_duration(t),
        }
    }
}

/// The largest config file read: a config of many models is a few KiB.
pub(crate) const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The text of the config file at `path`: a regular file (a FIFO or a device would block
/// the proxy that reads it again on SIGHUP) of at most [`MAX_CONFIG_BYTES`], in UTF-8.
pub(crate) fn read_file(path: &Path) -> Result<String, BadInput> {
    use std::io::Read;
    let shown = path.display();
    let refuse = |problem: String| {
        BadInput(format!(
            "cannot read the config file {shown}: {problem}; check the path given to --config"
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| refuse(e.to_string()))?;
    if !meta.is_file() {
        return Err(refuse("it is not a regular file".to_owned()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| refuse(e.to_string()))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(refuse(format!(
            "it is larger than {} KiB, which no config of models needs",
            MAX_CONFIG_BYTES >> 10
        )));
    }
    String::from_utf8(bytes).map_err(|_| refuse("it is not UTF-8 text".to_owned()))
}

/// Reads a config file's text; `path` names it in every error.
pub(crate) fn parse_file(path: &Path, text: &str) -> Result<ServePlan, BadInput> {
    let shown = path.display();
    let dir = path.parent().unwrap_or(Path::new("."));
    let file: File = toml::from_str(text)
        .map_err(|e| BadInput(format!("{shown}: {}\n{SEE}", e.to_string().trim_end())))?;
    // An error about a value: the file, the line of the value, the key, and what to do.
    let at = |span: std::ops::Range<usize>, key: &str, problem: String| {
        let line = text
            .get(..span.start)
            .map_or(0, |before| before.matches('\n').count())
            + 1;
        BadInput(format!("{shown}, line {line}, {key}: {problem}"))
    };

    if file.models.is_empty() {
        return Err(BadInput(format!(
            "{shown}: no models; add a [[models]] table with `alias` and `model` for each\n{SEE}"
        )));
    }
    let http = match &file.transport {
        None => false,
        Some(t) => match t.get_ref().as_str() {
            "socket" | "unix" => false,
            "http" => true,
            other => {
                return Err(at(
                    t.span(),
                    "transport",
                    format!("{other:?} is not a transport; write \"socket\" or \"http\""),
                ));
            }
        },
    };
    if file.port.is_some() && !http {
        return Err(BadInput(format!(
            "{shown}: port is set but transport is not \"http\"; add transport = \"http\" or \
             remove port"
        )));
    }
    let memory_budget = file
        .memory_budget
        .as_ref()
        .map(|b| parse_budget(b.get_ref()).map_err(|p| at(b.span(), "memory_budget", p)))
        .transpose()?;
    let load_timeout = match &file.load_timeout {
        None => DEFAULT_LOAD_TIMEOUT,
        Some(t) => positive(t.get_ref()).map_err(|p| at(t.span(), "load_timeout", p))?,
    };
    let start_timeout = match &file.start_timeout {
        None => DEFAULT_START_TIMEOUT,
        Some(t) => positive(t.get_ref()).map_err(|p| at(t.span(), "start_timeout", p))?,
    };
    let api_key_env = match &file.api_key_env {
        Some(v) if !is_env_name(v.get_ref()) => {
            return Err(at(
                v.span(),
                "api_key_env",
                format!(
                    "{:?} is not an environment variable name; name the variable that holds \
                     the key (e.g. \"LMCPP_PROXY_KEY\"), never the key itself",
                    v.get_ref()
                ),
            ));
        }
        v => v.as_ref().map(|v| v.get_ref().clone()),
    };
    let max_pass_over = match &file.max_pass_over {
        None => DEFAULT_MAX_PASS_OVER,
        Some(t) => t
            .get_ref()
            .parse()
            .map_err(|p| at(t.span(), "max_pass_over", p))?,
    };
    let default_keep_alive = match &file.keep_alive {
        None => Some(DEFAULT_KEEP_ALIVE),
        Some(k) => keep_alive(k.get_ref()).map_err(|p| at(k.span(), "keep_alive", p))?,
    };

    let mut models: Vec<ModelPlan> = Vec::with_capacity(file.models.len());
    for (i, m) in file.models.into_iter().enumerate() {
        let model = model_plan(&at, i, m, &models, default_keep_alive, dir)?;
        models.push(model);
    }
    Ok(ServePlan {
        memory_budget,
        http,
        port: file.port,
        load_timeout,
        start_timeout,
        api_key_env,
        max_pass_over,
        models,
    })
}

/// One `[[models]]` table checked (alias unique among `taken`, model named, backend known,
/// keep-alive and memory readable) into its plan.
fn model_plan(
    at: &impl Fn(std::ops::Range<usize>, &str, String) -> BadInput,
    i: usize,
    m: ModelEntry,
    taken: &[ModelPlan],
    default_keep_alive: Option<Duration>,
    dir: &Path,
) -> Result<ModelPlan, BadInput> {
    let key = |k: &str| format!("models[{i}].{k}");
    let alias = m.alias.get_ref().trim().to_owned();
    if let Some(problem) = alias_problem(&alias) {
        return Err(at(m.alias.span(), &key("alias"), problem));
    }
    if taken.iter().any(|o| o.alias == alias) {
        return Err(at(
            m.alias.span(),
            &key("alias"),
            format!("{alias:?} is used twice; give every model its own alias"),
        ));
    }
    let model =
        config_model(dir, m.model.trim()).map_err(|e| at(m.alias.span(), &key("model"), e))?;
    let backend = match &m.backend {
        None => None,
        Some(b) => Some(
            b.get_ref()
                .parse::<lmcpp::toolchain::Backend>()
                .map_err(|e| at(b.span(), &key("backend"), e.to_string()))?,
        ),
    };
    let keep_alive = match &m.keep_alive {
        None => default_keep_alive,
        Some(k) => keep_alive(k.get_ref()).map_err(|p| at(k.span(), &key("keep_alive"), p))?,
    };
    let start_timeout = m
        .start_timeout
        .as_ref()
        .map(|t| positive(t.get_ref()).map_err(|p| at(t.span(), &key("start_timeout"), p)))
        .transpose()?;
    let memory = m
        .memory
        .as_ref()
        .map(|v| match parse_budget(v.get_ref()) {
            Ok(Budget::Bytes(b)) => Ok(b),
            Ok(Budget::Percent(_)) => Err(at(
                v.span(),
                &key("memory"),
                "is the model's own size; write bytes (e.g. \"6GiB\"), not a percentage".to_owned(),
            )),
            Err(p) => Err(at(v.span(), &key("memory"), p)),
        })
        .transpose()?;
    if let Some(args) = &m.args {
        let written = |k: &str| match k {
            "ctx_size" => m.ctx_size.is_some(),
            "parallel" => m.parallel.is_some(),
            "embeddings" => m.embeddings.is_some(),
            "pooling" => m.pooling.is_some(),
            "draft" => m.draft.is_some(),
            // `alias` and `model` are required, so always written.
            _ => true,
        };
        if let Some((typed, flag)) = typed_key_in_args(args.get_ref(), written) {
            let remedy = if matches!(typed, "alias" | "model") {
                format!("remove {flag:?} from args")
            } else {
                format!("keep one: remove `{typed}` or {flag:?} from args")
            };
            return Err(at(
                args.span(),
                &key("args"),
                format!(
                    "{flag:?} sets what `{typed}` of model {alias:?} sets, and two settings \
                     of one flag would leave llama-server to pick one; {remedy}"
                ),
            ));
        }
    }
    Ok(ModelPlan {
        max_queue: queue_and_kv_cache(at, &key, &m, &alias)?,
        draft: draft_of(at, &key, &m, dir)?,
        alias,
        reference: m.model.trim().to_owned(),
        model,
        llama_version: m.llama_version,
        backend,
        llama_server: m.llama_server,
        args: m.args.map(Spanned::into_inner).unwrap_or_default(),
        ctx_size: m.ctx_size,
        parallel: m.parallel,
        embeddings: m.embeddings.unwrap_or(false),
        pooling: m.pooling,
        keep_alive,
        pinned: m.pinned,
        memory,
        start_timeout,
        keep_kv_cache: m.keep_kv_cache,
    })
}

/// A model's `max_queue` (at least 1) and its `keep_kv_cache` beside its `args` (which
/// must not set `--slot-save-path` then).
/// The draft model of a `[[models]]` table, parsed as its `model` is.
fn draft_of(
    at: &impl Fn(std::ops::Range<usize>, &str, String) -> BadInput,
    key: &impl Fn(&str) -> String,
    m: &ModelEntry,
    dir: &Path,
) -> Result<Option<lmcpp::ModelRef>, BadInput> {
    m.draft
        .as_ref()
        .map(|d| config_model(dir, d.get_ref().trim()).map_err(|e| at(d.span(), &key("draft"), e)))
        .transpose()
}

fn queue_and_kv_cache(
    at: &impl Fn(std::ops::Range<usize>, &str, String) -> BadInput,
    key: &impl Fn(&str) -> String,
    m: &ModelEntry,
    alias: &str,
) -> Result<Option<usize>, BadInput> {
    if m.keep_kv_cache
        && let Some(args) = &m.args
        && lmcpp::types::args::passthrough::read(args.get_ref())
            .iter()
            .any(|f| f.info.is_some_and(|i| i.field == "slot_save_path"))
    {
        return Err(at(
            args.span(),
            &key("args"),
            format!(
                "\"--slot-save-path\" is where `keep_kv_cache` of model {alias:?} keeps its \
                 cache; keep one: remove `keep_kv_cache` or \"--slot-save-path\" from args"
            ),
        ));
    }
    Ok(match &m.max_queue {
        None => None,
        Some(n) => match usize::try_from(*n.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(at(
                    n.span(),
                    &key("max_queue"),
                    "must be at least 1 (how many requests may wait for the model); leave it \
                     out for no bound"
                        .to_owned(),
                ));
            }
        },
    })
}

/// A duration that must not be 0 (a timeout).
fn positive(text: &DurationText) -> Result<Duration, String> {
    match text.parse()? {
        d if d.is_zero() => Err("must be longer than 0 (e.g. \"5m\")".to_owned()),
        d => Ok(d),
    }
}

/// The `[[models]]` keys that set a llama-server flag themselves, with the `ServerArgs`
/// fields whose spellings (from the generated flag table, so none is missed) they set.
const TYPED_KEYS: &[(&str, &[&str])] = &[
    ("alias", &["alias"]),
    ("model", &["model", "model_url", "hf_repo", "docker_repo"]),
    ("draft", &["spec_draft_model"]),
    ("ctx_size", &["ctx_size"]),
    ("parallel", &["parallel"]),
    ("embeddings", &["embeddings"]),
    ("pooling", &["pooling"]),
];

/// The first flag among `args` that sets what a typed key `written` says is set, as
/// `(key, flag)`. Values of flags are skipped, as llama-server reads them, so
/// `--chat-template -c` names a template, not a context size.
fn typed_key_in_args(
    args: &[String],
    written: impl Fn(&str) -> bool,
) -> Option<(&'static str, String)> {
    for flag in lmcpp::types::args::passthrough::read(args) {
        let Some(info) = flag.info else { continue };
        if let Some((typed, _)) = TYPED_KEYS
            .iter()
            .find(|(typed, fields)| fields.contains(&info.field) && written(typed))
        {
            return Some((typed, flag.name.to_owned()));
        }
    }
    None
}

/// Models from repeated `--model [alias=]ref`; an alias defaults to the model's own
/// (the reference as given, or a path's file stem).
pub(crate) fn models_from_args(
    refs: &[String],
    exists: impl Fn(&str) -> bool,
) -> Result<Vec<ModelPlan>, BadInput> {
    let mut models: Vec<ModelPlan> = Vec::with_capacity(refs.len());
    for given in refs {
        let (alias, reference) = split_alias(given, &exists);
        let model = lmcpp::ModelRef::parse(reference)
            .map_err(|e| BadInput(format!("--model {given}: {e}")))?;
        let alias = alias.unwrap_or_else(|| model.alias());
        if let Some(problem) = alias_problem(&alias) {
            return Err(BadInput(format!(
                "--model {given}: alias {alias:?} {problem}; write --model ALIAS=MODEL"
            )));
        }
        if models.iter().any(|m| m.alias == alias) {
            return Err(BadInput(format!(
                "--model {given}: alias {alias:?} is used twice; write --model ALIAS=MODEL \
                 with a different alias for each"
            )));
        }
        models.push(ModelPlan {
            alias,
            reference: reference.to_owned(),
            model,
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            ..ModelPlan::default()
        });
    }
    Ok(models)
}

/// `alias=ref` → `(Some(alias), ref)`. Only a plain name counts as an alias, so URLs with
/// query strings (`…?download=true`) and existing files whose names hold `=` stay whole.
fn split_alias(given: &str, exists: impl Fn(&str) -> bool) -> (Option<String>, &str) {
    if exists(given) {
        return (None, given);
    }
    match given.split_once('=') {
        Some((alias, reference))
            if !alias.is_empty()
                && !reference.is_empty()
                && alias
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            (Some(alias.to_owned()), reference)
        }
        _ => (None, given),
    }
}

/// A model named in a config file: a relative path is looked for next to the file first,
/// then the text is what [`lmcpp::ModelRef::parse`] makes of it; the problem otherwise.
fn config_model(dir: &Path, text: &str) -> Result<lmcpp::ModelRef, String> {
    if text.is_empty() {
        return Err("is empty; name a path, URL, owner/repo[:quant] or demo".to_owned());
    }
    let beside = dir.join(text);
    if !text.is_empty() && Path::new(text).is_relative() && beside.is_file() {
        let local = lmcpp::toolchain::models::ModelSource::Local(beside);
        return Ok(lmcpp::ModelRef::Source(local));
    }
    lmcpp::ModelRef::parse(text).map_err(|e| e.to_string())
}

/// Why `alias` cannot be an alias (the proxy's rule: 1 to 128 printable ASCII characters,
/// no spaces), or `None`.
fn alias_problem(alias: &str) -> Option<String> {
    if alias.is_empty() {
        Some("is empty".to_owned())
    } else if alias.len() > lmcpp::server::MAX_ALIAS_LEN {
        Some(format!(
            "is longer than {} characters",
            lmcpp::server::MAX_ALIAS_LEN
        ))
    } else if !alias.bytes().all(|b| b.is_ascii_graphic()) {
        Some(format!(
            "{alias:?} may hold only printable ASCII without spaces"
        ))
    } else {
        None
    }
}

/// Whether `s` is a plausible environment variable name.
fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A keep-alive: a duration, where `0` means "never stop".
fn keep_alive(text: &DurationText) -> Result<Option<Duration>, String> {
    let d = text.parse()?;
    Ok((!d.is_zero()).then_some(d))
}

/// `"90s"`, `"5m"`, `"1h30m"`, `"250ms"`, `"0"`, `"45"` (seconds).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("{text:?} is not a duration; write e.g. \"30s\", \"5m\", \"1h30m\" or \"0\"");
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

/// `"12GiB"`, `"512MiB"`, `"8G"` (binary), `"8GB"` (decimal), `"1000000"` (bytes),
/// `"75%"` (of RAM).
pub(crate) fn parse_budget(text: &str) -> Result<Budget, String> {
    let bad = || {
        format!(
            "{text:?} is not a size; write e.g. \"12GiB\", \"512MiB\", \"8GB\" or a share of \
             RAM such as \"75%\""
        )
    };
    let t = text.trim();
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad())?;
        return if p > 0.0 && p <= 100.0 {
            Ok(Budget::Percent(p))
        } else {
            Err(format!(
                "{text:?}: a share of RAM must be more than 0% and at most 100%"
            ))
        };
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (t[..split].trim(), t[split..].trim());
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Budget::Bytes(bytes as u64))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> Result<ServePlan, String> {
        parse_file(Path::new("/etc/lmcpp.toml"), text).map_err(|e| e.0)
    }

    const FULL: &str = r#"
memory_budget = "12GiB"
transport = "http"
port = 8080
load_timeout = "2m"
start_timeout = "2h"
api_key_env = "MY_PROXY_KEY"
keep_alive = "10m"
max_pass_over = "10s"

[[models]]
alias = "chat"
model = "owner/repo:Q4_K_M"
llama_version = "b11312"
backend = "cpu"
args = ["--temp", "0.7"]
ctx_size = 8192
parallel = 2
pinned = true
max_queue = 16
keep_kv_cache = true

[[models]]
alias = "embed"
model = "/models/e5.gguf"
llama_server = "/opt/llama/bin/llama-server"
embeddings = true
pooling = "mean"
keep_alive = "0"
memory = "1GiB"
start_timeout = "90s"
"#;

    #[test]
    fn a_full_config_reads_as_written() {
        let plan = parse(FULL).unwrap();
        assert_eq!(plan.memory_budget, Some(Budget::Bytes(12 << 30)));
        assert!(plan.http);
        assert_eq!(plan.port, Some(8080));
        assert_eq!(plan.load_timeout, Duration::from_secs(120));
        assert_eq!(plan.start_timeout, Duration::from_secs(7200));
        assert_eq!(plan.api_key_env.as_deref(), Some("MY_PROXY_KEY"));
        assert_eq!(plan.max_pass_over, Duration::from_secs(10));
        assert_eq!(
            plan.models[0],
            ModelPlan {
                alias: "chat".into(),
                reference: "owner/repo:Q4_K_M".into(),
                model: "owner/repo:Q4_K_M".parse().unwrap(),
                llama_version: Some("b11312".into()),
                backend: Some(lmcpp::toolchain::Backend::Cpu),
                args: vec!["--temp".into(), "0.7".into()],
                ctx_size: Some(8192),
                parallel: Some(2),
                keep_alive: Some(Duration::from_secs(600)),
                pinned: true,
                max_queue: Some(16),
                keep_kv_cache: true,
                ..ModelPlan::default()
            }
        );
        let embed = &plan.models[1];
        assert!(embed.embeddings);
        assert_eq!(
            embed.llama_server.as_deref(),
            Some(Path::new("/opt/llama/bin/llama-server"))
        );
        assert_eq!(embed.pooling.as_deref(), Some("mean"));
        assert_eq!(embed.keep_alive, None, "0 means never stop");
        assert_eq!(embed.memory, Some(1 << 30));
        assert_eq!(embed.start_timeout, Some(Duration::from_secs(90)));
        assert_eq!(plan.models[0].start_timeout, None, "the plan's");
    }

    #[test]
    fn the_minimal_config_takes_the_defaults() {
        let plan = parse("[[models]]\nalias = \"a\"\nmodel = \"demo\"\n").unwrap();
        assert_eq!(plan.memory_budget, None);
        assert!(!plan.http);
        assert_eq!(plan.load_timeout, DEFAULT_LOAD_TIMEOUT);
        assert_eq!(plan.max_pass_over, DEFAULT_MAX_PASS_OVER);
        assert_eq!(plan.models[0].max_queue, None);
        // A slow load is not killed at a request's wait: the start may take far longer.
        assert_eq!(plan.start_timeout, DEFAULT_START_TIMEOUT);
        assert!(plan.start_timeout > 10 * plan.load_timeout);
        assert_eq!(plan.models[0].keep_alive, Some(DEFAULT_KEEP_ALIVE));
        assert!(!plan.models[0].pinned);
    }

    /// Each bad file and the words its error must hold (besides the file's path).
    #[test]
    fn bad_files_are_refused_naming_the_line_key_and_remedy() {
        let m = "[[models]]\nalias = \"a\"\nmodel = \"demo\"\n";
        let table: Vec<(String, &[&str])> = vec![
            ("".into(), &["no models", "[[models]]"]),
            (
                format!("{m}keep_alive_s = 5\n"),
                &["line 4", "unknown field", "keep_alive_s"],
            ),
            (
                format!("colour = \"red\"\n{m}"),
                &["line 1", "unknown field", "colour"],
            ),
            (
                "[[models]]\nmodel = \"demo\"\n".into(),
                &["missing field", "alias"],
            ),
            (
                format!("memory_budget = \"lots\"\n{m}"),
                &["line 1", "memory_budget", "not a size", "GiB"],
            ),
            (
                format!("memory_budget = \"150%\"\n{m}"),
                &["line 1", "memory_budget", "at most 100%"],
            ),
            (
                format!("transport = \"carrier-pigeon\"\n{m}"),
                &["line 1", "transport", "\"socket\" or \"http\""],
            ),
            (format!("port = 80\n{m}"), &["port", "transport = \"http\""]),
            (format!("port = 70000\n{m}"), &["line 1", "port"]),
            (
                format!("load_timeout = \"0\"\n{m}"),
                &["line 1", "load_timeout", "longer than 0"],
            ),
            (
                format!("{m}max_queue = 0\n"),
                &["line 4", "max_queue", "at least 1"],
            ),
            (
                format!("{m}keep_kv_cache = true\nargs = [\"--slot-save-path=/x\"]\n"),
                &["line 5", "keep_kv_cache", "--slot-save-path"],
            ),
            (
                format!("max_pass_over = \"a while\"\n{m}"),
                &["line 1", "not a duration"],
            ),
            (
                format!("load_timeout = \"soon\"\n{m}"),
                &["line 1", "not a duration", "5m"],
            ),
            (
                format!("start_timeout = \"0\"\n{m}"),
                &["line 1", "start_timeout", "longer than 0"],
            ),
            (
                format!("{m}start_timeout = \"later\"\n"),
                &["line 4", "models[0].start_timeout", "not a duration"],
            ),
            (
                format!("api_key_env = \"sk-secret value\"\n{m}"),
                &["line 1", "api_key_env", "never the key itself"],
            ),
            (
                format!("{m}\n[[models]]\nalias = \"a\"\nmodel = \"x.gguf\"\n"),
                &["line 6", "models[1].alias", "used twice"],
            ),
            (
                "[[models]]\nalias = \"has space\"\nmodel = \"demo\"\n".into(),
                &["line 2", "models[0].alias", "printable ASCII"],
            ),
            (
                "[[models]]\nalias = \"a\"\nmodel = \"  \"\n".into(),
                &["models[0].model", "is empty"],
            ),
            (
                format!("{m}backend = \"tpu\"\n"),
                &["line 4", "models[0].backend", "cpu"],
            ),
            (
                format!("{m}keep_alive = \"5 minutes\"\n"),
                &["line 4", "models[0].keep_alive", "not a duration"],
            ),
            (
                format!("{m}memory = \"50%\"\n"),
                &["line 4", "models[0].memory", "not a percentage"],
            ),
            (format!("{m}ctx_size = -1\n"), &["line 4", "ctx_size"]),
            (format!("{m}args = \"--temp 0\"\n"), &["line 4", "args"]),
            ("[[models]\n".into(), &["line 1"]),
            ("\u{0}\u{1}binary".into(), &["line 1"]),
        ];
        for (text, words) in table {
            let err = parse(&text).expect_err(&text);
            assert!(err.starts_with("/etc/lmcpp.toml"), "{text:?}: {err}");
            for w in words {
                assert!(err.contains(w), "{text:?}: {w:?} not in {err}");
            }
        }
    }

    /// Every spelling of every flag a typed key sets, in `args` beside that key (with its
    /// value apart or after `=`), is refused when the file is read, naming the file, the
    /// line of `args`, the model, the key and the flag; the flag alone is passed on.
    #[test]
    fn a_typed_key_and_its_flag_in_args_are_refused_for_every_key_and_spelling() {
        let written = |typed: &str| match typed {
            "ctx_size" => "ctx_size = 512\n",
            "parallel" => "parallel = 2\n",
            "embeddings" => "embeddings = false\n",
            "pooling" => "pooling = \"mean\"\n",
            "draft" => "draft = \"demo\"\n",
            _ => "",
        };
        let head = "[[models]]\nalias = \"chat\"\nmodel = \"demo\"\n";
        let mut checked = 0;
        for (typed, fields) in TYPED_KEYS {
            let infos = lmcpp::types::args::FLAGS
                .iter()
                .filter(|f| fields.contains(&f.field));
            for (info, flag) in infos.flat_map(|i| i.flags.iter().map(move |f| (i, *f))) {
                let forms = match info.value {
                    Some(_) => vec![
                        vec![flag.to_owned(), "7".to_owned()],
                        vec![format!("{flag}=7")],
                    ],
                    None => vec![vec![flag.to_owned()]],
                };
                for args in forms {
                    let args = [vec!["--temp".to_owned(), "0".to_owned()], args].concat();
                    let text = format!("{head}{}args = {args:?}\n", written(typed));
                    let err = parse(&text).expect_err(&text);
                    let line = format!("line {}", if written(typed).is_empty() { 4 } else { 5 });
                    let words = [
                        "/etc/lmcpp.toml",
                        &line,
                        "models[0].args",
                        &format!("`{typed}`"),
                        &format!("{flag:?}"),
                        "\"chat\"",
                    ];
                    for w in words {
                        assert!(err.contains(w), "{text:?}: {w:?} not in {err}");
                    }
                    if !written(typed).is_empty() {
                        let alone = format!("{head}args = {args:?}\n");
                        assert_eq!(parse(&alone).expect(&alone).models[0].args, args);
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 20, "only {checked} cases");
        // A flag's value is not a flag: `-c` here is a chat template.
        let text = format!("{head}ctx_size = 512\nargs = [\"--chat-template\", \"-c\"]\n");
        assert_eq!(parse(&text).unwrap().models[0].ctx_size, Some(512));
    }

    /// Every `[[models]]` key that is also a llama-server flag is checked against `args`,
    /// so a key added later cannot be forgotten here.
    #[test]
    fn every_model_key_with_a_flag_spelling_is_a_typed_key() {
        // The TOML reader names every key it knows when it meets one it does not.
        let err =
            parse("[[models]]\nalias = \"a\"\nmodel = \"demo\"\nnot_a_key = 1\n").unwrap_err();
        let known = err.split("expected one of").nth(1).expect(&err);
        let keys: Vec<&str> = known.split('`').skip(1).step_by(2).collect();
        assert!(
            keys.contains(&"ctx_size") && keys.contains(&"pinned"),
            "{keys:?}"
        );
        for key in keys {
            let is_flag = lmcpp::types::args::FLAGS.iter().any(|f| f.field == key);
            let typed = TYPED_KEYS.iter().any(|(t, _)| *t == key);
            assert_eq!(is_flag, typed, "{key}");
        }
    }

    #[test]
    fn model_arguments_take_an_optional_alias() {
        let no_files = |_: &str| false;
        let refs = |r: &[&str]| r.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let got = models_from_args(
            &refs(&[
                "a=demo",
                "b=/models/x.gguf",
                "owner/repo:Q4_K_M",
                "https://h/x.gguf?download=true",
            ]),
            no_files,
        )
        .unwrap();
        let pairs: Vec<_> = got
            .iter()
            .map(|m| (m.alias.as_str(), m.reference.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a", "demo"),
                ("b", "/models/x.gguf"),
                ("owner/repo:Q4_K_M", "owner/repo:Q4_K_M"),
                ("x", "https://h/x.gguf?download=true"),
            ]
        );
        // An existing file with `=` in its name is a file, not an alias.
        let got = models_from_args(&refs(&["odd=name.gguf"]), |p| p == "odd=name.gguf").unwrap();
        assert_eq!(got[0].reference, "odd=name.gguf");

        let err = models_from_args(&refs(&["a=demo", "a=/x.gguf"]), no_files).unwrap_err();
        assert!(err.0.contains("used twice"), "{}", err.0);
        let err = models_from_args(&refs(&["demo", "demo"]), no_files).unwrap_err();
        assert!(err.0.contains("ALIAS=MODEL"), "{}", err.0);
    }

    mod props {
        use proptest::prelude::*;

        use super::super::*;

        /// TOML-ish text: the config's own keys, values and punctuation in any order.
        fn tomlish() -> impl Strategy<Value = String> {
            let token = prop_oneof![
                Just("[[models]]\n".to_owned()),
                Just("[models]\n".to_owned()),
                "(alias|model|keep_alive|memory_budget|memory|port|transport|args|pinned|ctx_size|load_timeout|start_timeout|api_key_env|backend) = ",
                "\"[a-z0-9%. /=:-]{0,12}\"\n",
                any::<i64>().prop_map(|n| format!("{n}\n")),
                Just("true\n".to_owned()),
                Just("[\"-c\", 1]\n".to_owned()),
                "[\\PC]{0,8}",
            ];
            proptest::collection::vec(token, 0..24).prop_map(|t| t.concat())
        }

        proptest! {
            /// Whatever the file holds, it is a plan or an error naming the file; every
            /// plan keeps the rules the checks promise.
            #[test]
            fn any_text_is_a_plan_or_an_error_naming_the_file(text in tomlish()) {
                match parse_file(Path::new("x.toml"), &text) {
                    Ok(plan) => {
                        prop_assert!(!plan.models.is_empty());
                        for (i, m) in plan.models.iter().enumerate() {
                            prop_assert!(alias_problem(&m.alias).is_none());
                            prop_assert!(!plan.models[..i].iter().any(|o| o.alias == m.alias));
                        }
                        prop_assert!(!plan.load_timeout.is_zero());
                    }
                    Err(e) => prop_assert!(e.0.starts_with("x.toml"), "{}", e.0),
                }
            }

            /// Sizes and durations never panic, and a written duration reads back.
            #[test]
            fn sizes_and_durations_never_panic(text in "\\PC{0,16}", secs in 0u64..1 << 40) {
                let _ = parse_budget(&text);
                let _ = parse_duration(&text);
                let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
                let written = format!("{h}h{m}m{s}s");
                prop_assert_eq!(parse_duration(&written), Ok(Duration::from_secs(secs)));
            }
        }
    }

    #[test]
    fn durations_table() {
        let ok = [
            ("0", 0),
            ("45", 45),
            ("90s", 90),
            ("5m", 300),
            ("1h30m", 5400),
            ("2d", 172_800),
            (" 10m ", 600),
        ];
        for (text, secs) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in [
            "",
            "m",
            "5 m",
            "5x",
            "-1s",
            "1.5h",
            "5m3",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn budgets_table() {
        let ok = [
            ("12GiB", Budget::Bytes(12 << 30)),
            ("12G", Budget::Bytes(12 << 30)),
            ("8GB", Budget::Bytes(8_000_000_000)),
            ("512 MiB", Budget::Bytes(512 << 20)),
            ("1.5GiB", Budget::Bytes(3 << 29)),
            ("1000000", Budget::Bytes(1_000_000)),
            ("75%", Budget::Percent(75.0)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_budget(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "GiB",
            "0",
            "-1GiB",
            "0%",
            "101%",
            "x%",
            "1e400",
            "12 parsecs",
            "NaN",
        ] {
            assert!(parse_budget(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Budget::Percent(50.0).bytes(Some(1000)), Ok(500));
        assert!(Budget::Percent(50.0).bytes(None).is_err());
    }
}
