//! Renders library progress events as progress bars (on a terminal) or plain lines.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lmcpp_toolchain::progress::{Progress, ProgressEvent, SharedProgress};

/// Turns [`ProgressEvent`]s into an indicatif bar on stderr, or into plain log lines when
/// stderr is not a terminal (CI logs stay readable) or when `--quiet` was given.
pub(crate) struct Renderer {
    state: Mutex<State>,
    tty: bool,
    quiet: bool,
}

struct State {
    bar: Option<ProgressBar>,
    stage: String,
    last_plain_percent: Option<u8>,
    last_plain_bytes: u64,
}

impl Renderer {
    pub(crate) fn shared(quiet: bool) -> SharedProgress {
        Arc::new(Renderer {
            state: Mutex::new(State {
                bar: None,
                stage: String::new(),
                last_plain_percent: None,
                last_plain_bytes: 0,
            }),
            tty: std::io::stderr().is_terminal(),
            quiet,
        })
    }
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn percent_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg} [{bar:30}] {pos}% {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} {bytes} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn line(text: &str) {
    say!("{text}");
}

impl Progress for Renderer {
    fn event(&self, event: ProgressEvent) {
        if self.quiet {
            return;
        }
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        match event {
            ProgressEvent::Stage { name } => {
                if let Some(bar) = st.bar.take() {
                    bar.finish_and_clear();
                }
                line(&format!("lmcpp: {name}"));
                st.stage = name;
                st.last_plain_percent = None;
                st.last_plain_bytes = 0;
            }
            ProgressEvent::Bytes { done, total } => {
                if self.tty {
                    let stage = st.stage.clone();
                    let bar = st.bar.get_or_insert_with(|| {
                        let bar =
                            ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
                        bar.set_style(if total.is_some() {
                            bytes_style()
                        } else {
                            spinner_style()
                        });
                        bar.set_message(stage);
                        bar
                    });
                    if let Some(total) = total {
                        bar.set_length(total);
                    }
                    bar.set_position(done);
                } else if done >= st.last_plain_bytes + (64 << 20) || Some(done) == total {
                    st.last_plain_bytes = done;
                    let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
                    line(&format!("lmcpp:   {done} bytes{of}"));
                }
            }
            ProgressEvent::BuildPercent { percent, .. } => {
                if self.tty {
                    let stage = st.stage.clone();
                    let bar = st.bar.get_or_insert_with(|| {
                        let bar =
                            ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
                        bar.set_style(percent_style());
                        bar.set_message(stage);
                        bar
                    });
                    bar.set_position(u64::from(percent));
                } else if st.last_plain_percent.is_none_or(|p| percent >= p + 10) {
                    st.last_plain_percent = Some(percent);
                    line(&format!("lmcpp:   build {percent}%"));
                }
            }
            ProgressEvent::Waiting { path, holder } => {
                let who = holder.unwrap_or_else(|| "another process".to_owned());
                line(&format!(
                    "lmcpp: waiting for {who} (lock {})",
                    path.display()
                ));
            }
            ProgressEvent::Note { message } => {
                if let Some(bar) = &st.bar {
                    bar.println(format!("lmcpp: {message}"));
                } else {
                    line(&format!("lmcpp: {message}"));
                }
            }
            ProgressEvent::Done => {
                if let Some(bar) = st.bar.take() {
                    bar.finish_and_clear();
                }
            }
            _ => {}
        }
    }
}
